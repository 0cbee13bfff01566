"""Eureka's REST API over the registry: existing Eureka clients register, renew and discover
through it with no code change."""
