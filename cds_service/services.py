"""The CDS services this app offers (discovery data)."""

from __future__ import annotations

from dataclasses import dataclass

from .crd.discovery import discovery_extension

PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "coverage": "Coverage?patient={{context.patientId}}&status=active",
}


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str

    def discovery(self) -> dict:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(PREFETCH),
            "extension": discovery_extension(),  # Da Vinci CRD version and configuration
        }


_DESCRIPTION = (
    "Checks draft MedicationRequests for intravenous ketamine or intravenous lidocaine and, "
    "when the indication is chronic pain or a psychiatric disorder, warns that the applicable "
    "health plan's medical policy on Intravenous Anesthetics for the Treatment of Chronic Pain "
    "and Psychiatric Disorders considers this use experimental/investigational, with the policy "
    "statement, an evidence summary and links."
)

SERVICES: dict[str, ServiceDefinition] = {
    s.id: s
    for s in (
        ServiceDefinition(
            id="iv-anesthetics-order-sign",
            hook="order-sign",
            title="IV ketamine / IV lidocaine payer policy check (order-sign)",
            description=_DESCRIPTION,
        ),
        ServiceDefinition(
            id="iv-anesthetics-order-select",
            hook="order-select",
            title="IV ketamine / IV lidocaine payer policy check (order-select)",
            description=_DESCRIPTION + " Only the orders named in context.selections are checked.",
        ),
    )
}
