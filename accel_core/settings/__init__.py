"""Per-variant settings: which model of a family runs (variants), what each preset means on it with its
source (records), and the one resolver every node goes through (resolve)."""
