"""ASV benchmarks of pytest-dojo (``benchmark_dir`` of ``asv.conf.json``); docs/history.md explains them.

asv runs *these* files against every commit it records, old ones included: the project under test
(``hwmodel``, ``pytest_dojo`` and the networks in ``dojo_networks``) comes from that commit's
checkout, found on ``ASV_PYTHONPATH`` (existing environment) or installed into asv's virtualenv.
So every import of the project is guarded, and a benchmark whose network or API the commit lacks
raises ``NotImplementedError`` in ``setup``, which asv records as skipped.

* ``simulated``: modelled figures of the full-size networks on D1 meshes (deterministic ``track_*``):
  samples/s for reading, step time for regression detection, and the simulator's own speed.
* ``host``: the real training step of the ``small`` networks on this machine's CPU (``time_*``)
  and the peak memory of capturing a full-size step (``peakmem_*``).
"""
