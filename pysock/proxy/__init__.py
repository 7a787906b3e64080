"""pysock's proxy: faults in front of any real server.

- config.py: ProxyConfig, the upstream's parsing and resolution;
- proxy.py: pysock.Proxy, its options and lifecycle (pysock.engines.lifecycle);
- twin.py: the asyncio twin (the C engine is csrc/proxy.c, driven by
  pysock.engines.c like every C engine).

Nothing is imported here: pysock.Proxy loads what it needs."""
