"""`phenomjax plan`: what a run will cost before it starts (parameters, FLOPs, memory, time).

    counts   exact parameter counts (jax.eval_shape of the real init), analytic FLOPs and traffic
    memory   the peak-memory breakdown, and the refusal of configs that cannot fit
    devices  named accelerators, the roofline projection, this machine's memory
    timing   a few real steps and one evaluation of the actual jitted programs, here
    report   everything together, as a dict (the command prints it or dumps it as JSON)

This package imports nothing at import time: train, fit-phenom and sweep import
`plan.memory` for their refusal, and the heavy parts are imported only when used.
"""
