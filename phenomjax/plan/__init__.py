"""`phenomjax plan`: what a run will cost before it starts (parameters, FLOPs, memory, time).

Generic over the model families, which stand above these first four modules:

    estimate  the words of a cost (Work, Part, Cost) and the parts every family shares
    memory    the refusal of what cannot fit (check_fits), called before anything is allocated
    devices   named accelerators, the roofline projection, this machine's memory
    timing    the harness that times a family's real programs (a Probe), here

and above the families, the command's report:

    report    everything together for one config, as a dict (the command prints it or dumps it)

Each family answers in these words: phenomjax.transformer.cost, phenomjax.phenom.cost; a config
names its family by its `cost()` method.
"""
