"""The neutral contract at the bottom of the project: what every arm and the harness agree on.

    events          the JSONL step/eval/final records every arm writes and the harness reads
    schedule        the LR warmdown shapes and their closed form (one definition for both arms and the checks)
    upstream_output facts about what upstream's base_train prints (decimals, logging EMA, fixed seed)
    files           atomic writes and JSON reads, used by every layer
    kernels         our trainer's two orders of operations: fast (default) and parity (exact-parity checks)

Standard library only. models/, upstream/ and harness/ import this package; it imports none of them.
"""
