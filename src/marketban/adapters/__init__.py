"""Adapters to the outside world: Kafka clients, files, the Faust runtime."""
