"""Make in-process moto answer TLS-listener calls as AWS does, with botocore hooks.

What moto (5.2) gets wrong here:

* CreateListener accepts a certificate that ACM has not issued; AWS answers `UnsupportedCertificate`
  ("... must have a fully-qualified domain name, a supported signature, and a supported key size";
  DataBiosphere/azul#8321, alphagov/paas-cf#3063), a code not in botocore's CreateListener errors.
* ModifyListener refuses Protocol="TLS" (UnsupportedProtocol: moto/elbv2/models.py accepts only HTTP, HTTPS
  and TCP) and applies `Certificates` only to HTTPS listeners: on a TLS listener a new certificate is
  silently dropped. AWS changes a TLS listener's certificate, policy, port and action in place
  (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_ModifyListener.html).
* moto issues a requested certificate at once in tests (conftest sets ACM_VALIDATION_WAIT to 0); AWS takes
  seconds to minutes after the validation record resolves. `Issuance` holds it PENDING_VALIDATION.

The answers are given on the generic `before-call` event, registered after the clients' call recorders
(the first answer ends the event), so the calls are still recorded and checked by the contract layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moto.acm.models import acm_backends
from moto.elbv2.exceptions import ListenerNotFoundError
from moto.elbv2.models import FakeAction, FakeListener, elbv2_backends
from moto.elbv2.ssl_policies import SSL_POLICIES

from deployer.settings import TLS_POLICIES
from tests.faults import Answer, error_answer, keep_params, ok_answer

SERVICE = "elastic-load-balancing-v2"
TERMINATING = ("TLS", "HTTPS")
UNSUPPORTED_CERTIFICATE = (
    "UnsupportedCertificate",
    "The certificate '{arn}' must have a fully-qualified domain name, a supported signature, and a supported key size.",
)


@dataclass
class Issuance:
    """ACM issuing the certificate late: DescribeCertificate answers PENDING_VALIDATION `pending_describes` times,
    and until then the certificate is not issued for ELB either."""

    pending_describes: int = 0

    def install(self, acm: Any) -> None:
        acm.meta.events.register("after-call.acm.DescribeCertificate", self._describe)

    @property
    def pending(self) -> bool:
        return self.pending_describes > 0

    def _describe(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.pending_describes > 0 and "Certificate" in parsed:
            self.pending_describes -= 1
            parsed["Certificate"]["Status"] = "PENDING_VALIDATION"


@dataclass
class TlsListeners:
    """The emulation of ELB's TLS listeners on top of moto, for one account's clients."""

    account: str
    region: str = ""  # the clients', set by install
    issuance: Issuance = field(default_factory=Issuance)
    modified: list[dict[str, Any]] = field(default_factory=list)  # every ModifyListener request, as sent

    def install(self, elbv2: Any, acm: Any) -> None:
        self.issuance.install(acm)
        self.region = elbv2.meta.region_name
        for operation in ("CreateListener", "ModifyListener"):
            elbv2.meta.events.register(f"before-parameter-build.{SERVICE}.{operation}", keep_params)
        elbv2.meta.events.register("before-call", self._answer)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> Answer | None:
        params = context.get("api_params", {})
        if model.name == "ModifyListener":
            self.modified.append(params)
            return self._modify(params)
        if model.name == "CreateListener" and params.get("Protocol") in TERMINATING:
            return self._refusal(params)
        return None

    def _refusal(self, params: dict[str, Any]) -> Answer | None:
        """UnsupportedCertificate for a certificate ACM has not issued (moto checks only that it exists)."""
        for certificate in params.get("Certificates", []):
            arn = certificate.get("CertificateArn", "")
            bundle = acm_backends[self.account][self.region]._certificates.get(arn)
            if bundle is not None and (self.issuance.pending or bundle.status != "ISSUED"):
                code, message = UNSUPPORTED_CERTIFICATE
                return error_answer(code, message.format(arn=arn))
        return None

    def _modify(self, params: dict[str, Any]) -> Answer | None:
        """ModifyListener on a TLS listener (or to TLS) as AWS applies it; moto answers the others itself."""
        listener = self._listener(params.get("ListenerArn", ""))
        if listener is None or "TLS" not in (listener.protocol, params.get("Protocol")):
            return None
        policy = params.get("SslPolicy")
        if policy is not None and policy not in SSL_POLICIES and policy not in TLS_POLICIES:
            return error_answer("SSLPolicyNotFound", f"Policy {policy} not found")
        refusal = self._refusal(params) or _protocol_refusal(listener, params)
        if refusal is not None:
            return refusal
        listener.port = params.get("Port", listener.port)
        if params.get("Protocol") == "TCP":  # "removes the security policy and default certificate properties"
            listener.ssl_policy = None  # type: ignore[assignment]  # moto types it str; a TCP listener has none
            listener.certificate, listener.certificates = None, []
        listener.protocol = params.get("Protocol", listener.protocol)
        listener.ssl_policy = policy or listener.ssl_policy
        if "Certificates" in params:
            listener.certificates = [c["CertificateArn"] for c in params["Certificates"]]
            listener.certificate = listener.certificates[0]
        if params.get("DefaultActions"):
            actions = [FakeAction(dict(action)) for action in params["DefaultActions"]]
            listener.default_actions = actions
            listener._default_rule[0].actions = actions
        return ok_answer({"Listeners": []})

    def _listener(self, arn: str) -> FakeListener | None:
        try:
            found: list[FakeListener] = elbv2_backends[self.account][self.region].describe_listeners(None, [arn])
        except ListenerNotFoundError:
            return None
        return found[0]


def _protocol_refusal(listener: FakeListener, params: dict[str, Any]) -> Answer | None:
    """TCP to TLS needs both: "If you change the protocol from HTTP to HTTPS, or from TCP to TLS, you must add the
    security policy and default certificate properties" (ModifyListener, API reference above)."""
    to_tls = listener.protocol != "TLS" and params.get("Protocol") == "TLS"
    if to_tls and not {"SslPolicy", "Certificates"} <= set(params):
        return error_answer("InvalidConfigurationRequest", "A certificate and a security policy are required for TLS")
    return None
