"""How upstream karpathy/nanochat is fetched, pinned, prepared and run. Never upstream's own code."""
