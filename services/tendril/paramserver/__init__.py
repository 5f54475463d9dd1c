"""ParameterServer: DiLoCo aggregation of pseudo-gradients and the outer Nesterov step.

Core (no gRPC): ``rounds`` (round state machine), ``outer`` (outer optimizer),
``aggregate`` (fold of committed pushes + outer step, file to file), ``spool`` (receiving one
push), ``store`` (state on disk), ``core`` (runs, pushes, pulls). ``servicer`` is the thin
gRPC layer, ``service`` wires it, ``executor`` is the "aggregate" executor program.
"""
