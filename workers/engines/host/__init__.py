"""Engine hosts: engines that must not run inside the worker process (neonize) run in child
processes started fresh (never forked from a process holding state), one engine per host, talking
to the worker over a pair of pipes. `client.HostedEngine` is the worker's side, `server` the host's.
"""
