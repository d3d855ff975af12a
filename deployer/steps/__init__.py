"""One module per resource group; one small class per resource, all on the `Step` protocol."""
