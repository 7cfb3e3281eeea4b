"""capi-stream: deliver conversion events from Kafka to Meta's Conversions API."""
