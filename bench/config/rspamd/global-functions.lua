-- What Debian's rules/rspamd.lua does first, and all the benchmark's
-- configuration needs of it: the global helpers the Lua modules call
-- (rspamd_parse_redis_server, ...), without loading rspamd's stock rules.
require "global_functions" ()
