"""CPU-scale reproduction suite on real CIFAR-10 (the offline archive), for 2-core machines.

``configs/cpu/cifar10.py`` takes a paper config of ``configs/paper/`` and scales it down; the runs
of ``python -m launch.reproduce --suite cpu`` (and the other CPU suites) that use it are listed,
as data, in ``ul_jax/paper/suites.py`` (see ``docs/REPRODUCTION.md`` for the protocol and the
measured throughput).
"""
