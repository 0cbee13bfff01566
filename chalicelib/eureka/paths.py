"""Where Eureka's REST API is served: under both paths its clients are configured with
(Spring Cloud's and py-eureka-client's ``/eureka``, Netflix's and eureka-js-client's
``/eureka/v2``). The routes are registered in ``app.py``; the log reads them too."""

from __future__ import annotations

PREFIXES = ("/eureka", "/eureka/v2")

# A renew (PUT) shares its route with reading (GET) and cancelling (DELETE) an instance.
INSTANCE_ROUTES = frozenset(f"{p}/apps/{{app_name}}/{{instance_id}}" for p in PREFIXES)
# What every client polls, every 30 s by default.
POLL_ROUTES = frozenset(route for p in PREFIXES for route in (f"{p}/apps", f"{p}/apps/delta"))
