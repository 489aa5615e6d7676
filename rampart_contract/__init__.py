"""The bundle contract: what the compiler writes and the agent reads, in the standard
library only, so both import one definition (format and hash, kernel names, signing)."""
