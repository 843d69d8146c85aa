/** Exit codes of the CLI: sysexits(3) where one fits. */
export const EX_USAGE = 64;
export const EX_UNAVAILABLE = 69;
export const EX_SOFTWARE = 70;
/** A config file that does not load. */
export const EX_CONFIG = 78;
