"""Match quality: Meta's Dataset Quality API beside our own count of customer keys.

Modules: ``model`` (the request's fields and Meta's answer as typed data; pure), ``client``
(the GET, with the deliver stage's tokens), ``local`` (customer-key coverage read back from the
enriched topic), ``report`` (the joined table, its advice and JSON), ``plot`` (an optional
chart), ``exporter`` (the gauges and the poller behind ``capi-stream quality serve``), ``cli``
(the ``capi-stream quality`` command).
"""
