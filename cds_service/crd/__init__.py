"""Da Vinci Coverage Requirements Discovery (CRD 2.0.1) on top of the hook pipeline.

``settings``: the request's CRD version and configuration; ``discovery``: what services declare;
``coverage_info``: the pure coverage-information assertions; ``respond``: the CRD response
(cards and system actions); ``topic``: the card topic per client; ``store``: kept assertions.
"""
