"""lambdamesh's routing decisions, shared by the gateway (the Lambda) and the sidecar's
outbound port, so the two can never disagree: which instances are routable, which version an
alias picks, which instance a strategy picks, when an instance is ejected, when a failed try
may be retried, what a failed try answers, and which headers cross the proxy; and the rules
both read their input by: names and identifiers, an instance's weight and lease ranges, and
on/off settings.

Pure and standard library only: no I/O beyond what a caller hands in (a clock, a resolver,
a sleep). Both the Lambda package (through ``vendor/``) and the sidecar's image ship it.
"""
