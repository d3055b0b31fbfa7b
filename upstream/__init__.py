"""How upstream karpathy/nanochat is fetched, pinned, prepared and run. Never upstream's own code.

    pin        the pinned commit and the environment variable names
    source     mirror a source into the cache, one clean work tree per commit (Checkout: sha, ref, clean)
    deps       upstream's run-time imports, checked in the harness's interpreter
    corpus     training text: the embedded offline corpus or the user's files
    workspace  a base dir per data setting: parquet shards + tokenizer from upstream's own tok_train
    warmdown   the 1-sqrt LR warmdown (and Muon weight decay off) swapped into base_train's syntax tree
    launch     ``python -m upstream.launch``: runs base_train with the swap, as torchrun's script too
    run        UpstreamLaunch: command, environment, directories, collecting events after the run
    logparse   upstream's stdout into protocol.events records, line by line
    verify     a finished run against the requested steps, batch and LR trace
"""
