"""The multi-host lab: Tendril's peers in network namespaces over tbf-shaped links (docs/WAN.md).

:class:`tendril.lab.lab.Lab` builds and removes a lab; :mod:`tendril.lab.net` its network;
:mod:`tendril.lab.measure` measures a link; :mod:`tendril.lab.train` runs DiLoCo in it.
"""
