"""The ASGI middleware of the app, outermost first as `deskml/app.py` stacks them: `guard.ClientAddress`,
`observe.Observe`, `errors.ContainErrors`, `guard.HostOriginGuard`, `body.BodySizeLimit` and
`body.JsonBodyDefault`, (CORS), `methods.MethodsMiddleware`, `auth.AuthMiddleware`, `ratelimit.RateLimit`,
`hops.NodeHops`. Those that need objects built in the lifespan take a provider (a callable) at
`add_middleware` time and ask it per request."""
