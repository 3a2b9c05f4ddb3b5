"""The `make bench` harness: starts the local stack, runs the scenarios of
issue 6 and writes loadtest/results/latest.{md,json}.

Modules: resp (a tiny Redis client), procs (processes, ports, RSS),
stack (redis, stand-in cluster, workers, api), httpc (a threaded keep-alive
client for setup traffic), tools (k6, wrk, redis-benchmark, perf, cargo),
scenarios (what is measured), report (markdown and JSON).
Python 3 standard library only, so a fresh machine needs nothing extra.
"""
