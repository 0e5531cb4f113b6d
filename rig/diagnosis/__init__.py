"""Why a run failed, from what it recorded: race evidence in the make_shard lines, what fills
the shards, and how long the pins take to reach the ceiling. Pure: values in, values out."""
