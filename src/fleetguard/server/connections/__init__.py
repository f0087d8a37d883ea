"""Bounded connections on each listener of ``fleetguard serve``: slow or idle clients are
dropped, floods are capped.

uvicorn bounds none of this (0.54, read from its source): a new connection may stay silent,
send half its headers or trickle its body for ever, since its only timer is the keep-alive
one armed after a response; its ``limit_concurrency`` answers 503 only after the TLS
handshake and the whole header block; and the TLS handshake may take asyncio's default of
60 s. So each listener is served by a ``listener.GuardedServer`` with its own
``guard.ConnectionGuard`` (``limits``: how many connections, how long a client may take):

* the server accepts itself and counts a connection before any TLS work. Over its address's
  share it is reset at once. When the listener is full, the connection that has waited
  longest on its client (handshake, idle, headers or body) makes room; one the app is working
  for is never evicted; with none waiting, the new one is reset. The operator API and the
  device endpoint count separately, so a flood on one leaves the other alone;
* TLS is the event loop's own (``connect_accepted_socket``) with a 10 s handshake timeout;
* the HTTP protocol (``deadlines.guarded_protocol``, uvicorn's httptools one underneath)
  wants a request's first byte within ``idle_timeout_s`` of the connection or of the last response,
  the header block within ``header_timeout_s`` of that byte, and a body that keeps coming:
  no pause over ``body_timeout_s`` and on average ``body_min_rate`` bytes/s after the first
  ``body_timeout_s`` (Apache's mod_reqtimeout rule). Slow headers or body get a 408 with our
  JSON error before the close; an idle connection is closed silently, as HTTP/1.1 allows;
* a client that stops taking its response (a slow read: the transport's buffer stays full for
  ``send_timeout_s``) is cut.

While the app holds a request (reading slowly, or streaming a response such as the
dashboard's live updates) no other deadline runs: the app decides.
"""
