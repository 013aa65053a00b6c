# ruff: noqa: E501  (verbatim help pages)
"""Texts of the ``help`` statement.

``help`` and ``help list`` answer with the real server's pages verbatim (clients may
show them); other topics get a short summary of what the embedded server supports.
"""

from __future__ import annotations

ROOT = (
    'help\n'
    '====\n'
    '\n'
    'Displays this help page.\n'
    '\n'
    'Alias: ?\n'
    '\n'
    'Syntax:\n'
    '\n'
    '    help [<option>] [...]\n'
    '\n'
    'Available help options:\n'
    '\n'
    '- `timeit`: see `help timeit` for more information.\n'
    '- `show`: see `help show` for more information.\n'
    '- `count`: see `help count` for more information.\n'
    '- `list`: see `help list` for more information.\n'
    '- `select`: see `help select` for more information.\n'
    '- `create`: see `help create` for more information.\n'
    '- `alter`: see `help alter` for more information.\n'
    '- `drop`: see `help drop` for more information.\n'
    '- `grant`: see `help grant` for more information.\n'
    '- `revoke`: see `help revoke` for more information.\n'
    '\n'
    'help notes\n'
    '----------\n'
    'Values between [ ] are optional.\n'
    '\n'
    'Values between < > are not real keywords but explained later in the help file.\n'
    '\n'
    'Three dots (...) means more.\n'
    '\n'
    'string values\n'
    '-------------\n'
    'A string value should be between single-, or double-quotes. When you use a single quote to start the string and need a single quote inside the string you need to prefix the single quote with another single quote.\n'
    '\n'
    'Examples:\n'
    '\n'
    '\t\'This is a double quote " and a single quote \'\' in a single quoted string\'\n'
    '\t"This is a double quote "" and a single quote \' in a double quoted string"\n'
    '\n'
    'time expressions\n'
    '----------------\n'
    "Time expressions are translated to a time-stamp by SiriDB. When using a 'seconds' based precision database the value should be between 0 and 4294967295 and when 'milliseconds' are used, values between 0 and 1,844674407×10¹⁹ are allowed. In a time expressions it's allowed to use integer values, date strings and keyword `now` for the current time-stamp. Float values are not allowed since we expect time-stamps to be integer values. It's possible to use suffixes 'd', 'h', 'm' and 'ms' behind integer values to specify days, hours, minutes, seconds and \\*milliseconds (be careful using milliseconds when having a 'seconds' precision database since the value will be floored to seconds *before* calculating the expression). \n"
    '\n'
    'The following operators can be used:\n'
    '\n'
    '\t+, -, *, / and %\n'
    '\n'
    'Note: `/` is a division towards zero, for example: `10 / 3` will return time-stamp value 3\n'
    '\n'
    'Examples:\n'
    '\n'
    '\tnow - 10d  # Returns the time-stamp for exactly 10 days ago.\n'
    "\t'2015-04-01' + 1h * 24  # Returns the time-stamp of April 2, 2015.\n"
    '\n'
    'date strings\n'
    '------------\n'
    'Date strings are strings between single- or double-quotes representing a time-stamp value at a given date/time.\n'
    '\n'
    'Format:\n'
    '\n'
    '\tYYYY-MM-DD HH:MM:SSZ\n'
    '\n'
    "Instead of a space between date and time it's also possible to use capital T.\n"
    'We do not need to specify the whole date/time when another precision is enough.\n'
    'These are all valid date strings:\n'
    '\n'
    "\t'2013-02-10 13:04:12Z'\n"
    "\t'2013-02-10 13:04:12+0200'\n"
    "\t'2013-2-10T13:04Z'\n"
    "\t'2013-2-10 13'\n"
    "\t'2013-02-10'\n"
    '\t"2013-02"\n'
    '\t"2013"\n'
)

LIST = (
    'list\n'
    '====\n'
    '\n'
    'Syntax\n'
    '\n'
    '\tlist <option> ...\n'
    '\n'
    'See available options for more information on each *list* command:\n'
    '\n'
    '- `list groups`: see `help list groups` for more information.\n'
    '- `list pools`: see `help list pools` for more information.\n'
    '- `list series`: see `help list series` for more information.\n'
    '- `list servers`: see `help list servers` for more information.\n'
    '- `list shards`: see `help list shards` for more information.\n'
    '- `list users`: see `help list users` for more information.\n'
    '\n'
    '\n'
    '>**Warning**\n'
    '>\n'
    '>Each list command allows a limit option which is set to 1000 by default but\n'
    '>can be any integer value from 1 to 10000. Usually we only expect to reach this\n'
    ">limit with listing series or shards, but note that it's always there. We have\n"
    '>set the 1000 limit by default to prevent accidentally listing all series\n'
    '>(its possible to have millions of series).\n'
)

_TOPICS = {
    "access": "access\n======\n\nAccess rights: select, show, list, count, create, insert, drop, grant,\nrevoke and alter. Profiles: read (select, show, list, count), write (read plus\ncreate and insert), modify (write plus drop and alter) and full (everything).\n",
    "alter": "alter\n=====\n\nSyntax:\n\n\talter <database|group|tag|user|series|server|servers> ...\n\nChanges a database setting (select_points_limit, list_limit, drop_threshold,\ntimezone, expiration_num, expiration_log), renames or re-defines a group,\nrenames a tag or a user, changes a password, or tags and untags series.\n",
    "count": "count\n=====\n\nSyntax:\n\n\tcount <series|groups|tags|users|pools|servers|shards> [...] [where ...]\n\nReturns the number of matching items; `count series length` sums points.\n",
    "create": "create\n======\n\nSyntax:\n\n\tcreate group `name` for /regex/\n\tcreate user \"name\" set password \"secret\"\n",
    "drop": "drop\n====\n\nSyntax:\n\n\tdrop <series|shards|group|tag|user> ...\n\nDropping series or shards beyond the drop_threshold needs\n`set ignore_threshold true`.\n",
    "functions": "functions\n=========\n\nAggregate functions: count, sum, mean, median, median_low, median_high, min,\nmax, first, last, stddev, variance, pvariance, difference, derivative, limit,\nfilter, timeval, interval and offset. Combine them with `=>`.\n",
    "grant": "grant\n=====\n\nSyntax:\n\n\tgrant <access> to user \"name\"\n",
    "noaccess": "noaccess\n========\n\nThe user has no rights for this statement; see `help access`.\n",
    "revoke": "revoke\n======\n\nSyntax:\n\n\trevoke <access> from user \"name\"\n",
    "select": "select\n======\n\nSyntax:\n\n\tselect <points/functions> from <series> [where ...] [<time range>] [merge as \"name\" [using <functions>]]\n\nTime range: after t, before t or between t1 and t2 (start included, end excluded).\n",
    "show": "show\n====\n\nSyntax:\n\n\tshow [<setting> [, ...]]\n\nShows all settings and statistics, or the named ones.\n",
    "timeit": "timeit\n======\n\nSyntax:\n\n\ttimeit <statement>\n\nAdds the time the server needed to the answer under `__timeit__`.\n",
    "timezones": "timezones\n=========\n\nAny IANA time zone name (for example 'Europe/Amsterdam' or 'UTC') or 'NAIVE'\nfor UTC without a zone.\n",
}


def help_text(topic: tuple[str, ...]) -> str:
    """The help page for a topic such as ``()``, ``("list",)`` or ``("list", "series")``."""
    if not topic:
        return ROOT
    if topic == ("list",):
        return LIST
    if topic[0] == "list":
        return (
            f"list {' '.join(topic[1:])}\n{'=' * (5 + len(' '.join(topic[1:])))}\n\n"
            f"Syntax:\n\n\tlist {topic[1]} [<columns>] [<match>] [where ...] [limit n]\n"
        )
    text = _TOPICS.get(topic[0])
    if text is None:
        return f"No help available for '{' '.join(topic)}'. See `help` for the topics.\n"
    return text
