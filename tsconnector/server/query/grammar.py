"""The SiriDB query language as a pyleri grammar, and SiriDB-style parse error messages.

The alternatives are listed in the order the real server tries them, because that
order decides the "Expecting ..." list of a syntax error, which clients see verbatim.
"""

from __future__ import annotations

import re
from typing import Any

from pyleri import (
    THIS,
    Choice,
    Grammar,
    Keyword,
    List,
    Optional,
    Prio,
    Regex,
    Repeat,
    Sequence,
    Token,
    Tokens,
)
from pyleri.endofstatement import end_of_statement
from pyleri.exceptions import MaxRecursionError
from pyleri.node import Node
from pyleri.result import Result


def _kw(word: str) -> Keyword:
    return Keyword(word, ign_case=True)


def _first(*elements: Any) -> Choice:
    return Choice(*elements, most_greedy=False)


def _where(*conditions: Any) -> Sequence:
    """``where`` followed by conditions combined with parentheses, ``and`` and ``or``."""
    return Sequence(
        SiriGrammarBase.k_where,
        Prio(
            *conditions,
            Sequence("(", THIS, ")"),
            Sequence(THIS, SiriGrammarBase.k_and, THIS),
            Sequence(THIS, SiriGrammarBase.k_or, THIS),
        ),
    )


class _OrderedExpecting:
    """Like pyleri's Expecting, but remembers the order in which elements were tried.

    The real server (libcleri) reports required elements first, then optional ones,
    each in the order the parser met them.
    """

    __slots__ = ("_modes", "optional", "pos", "required")

    def __init__(self) -> None:
        self.required: dict[Any, None] = {}
        self.optional: dict[Any, None] = {}
        self.pos = 0
        self._modes: dict[int, dict[Any, None]] = {0: self.required}

    def set_mode_required(self, pos: int, is_required: bool) -> None:
        if self._modes.get(pos) is self.optional:
            return
        self._modes[pos] = self.required if is_required else self.optional

    def empty(self) -> None:
        self.required.clear()
        self.optional.clear()

    def update(self, element: Any, pos: int) -> None:
        if pos > self.pos:
            self.empty()
            self.pos = pos
        if pos == self.pos:
            self._modes.setdefault(pos, self.required)[element] = None

    def ordered(self) -> list[Any]:
        return list(self.required) + [e for e in self.optional if e not in self.required]


class SiriGrammarBase:
    """Shared terminals; kept outside the grammar class so helpers can reference them."""

    k_where = _kw("where")
    k_and = _kw("and")
    k_or = _kw("or")


_FUNCTION_WORDS = (
    "mean", "sum", "median", "median_low", "median_high", "min", "max", "count",
    "variance", "pvariance", "stddev", "first", "last", "timeval", "interval",
)


class SiriGrammar(Grammar):
    """Grammar of SiriDB 2.0 queries (select, list, count, show, alter, ...)."""

    RE_KEYWORDS = re.compile(r"^[a-z_]+", re.IGNORECASE)

    # -- terminals ---------------------------------------------------------------------
    r_float = Regex(r"[-+]?[0-9]*\.?[0-9]+")
    r_integer = Regex(r"[-+]?[0-9]+")
    r_uinteger = Regex(r"[0-9]+")
    r_time_str = Regex(r"[0-9]+[smhdw]")
    r_singleq_str = Regex(r"(?:'(?:[^']*)')+")
    r_doubleq_str = Regex(r'(?:"(?:[^"]*)")+')
    r_grave_str = Regex(r"(?:`(?:[^`]*)`)+")
    r_uuid_str = Regex(r"[0-9a-f]{8}\-[0-9a-f]{4}\-[0-9a-f]{4}\-[0-9a-f]{4}\-[0-9a-f]{12}")
    r_regex = Regex(r"(/[^/\\]*(?:\\.[^/\\]*)*/i?)")
    r_comment = Regex(r"#.*")

    k_access = _kw("access")
    k_active_handles = _kw("active_handles")
    k_active_tasks = _kw("active_tasks")
    k_address = _kw("address")
    k_after = _kw("after")
    k_all = _kw("all")
    k_alter = _kw("alter")
    k_and = SiriGrammarBase.k_and
    k_as = _kw("as")
    k_backup_mode = _kw("backup_mode")
    k_before = _kw("before")
    k_buffer_path = _kw("buffer_path")
    k_buffer_size = _kw("buffer_size")
    k_between = _kw("between")
    k_count = _kw("count")
    k_create = _kw("create")
    k_critical = _kw("critical")
    k_database = _kw("database")
    k_dbname = _kw("dbname")
    k_dbpath = _kw("dbpath")
    k_debug = _kw("debug")
    k_derivative = _kw("derivative")
    k_difference = _kw("difference")
    k_drop = _kw("drop")
    k_drop_threshold = _kw("drop_threshold")
    k_duration_log = _kw("duration_log")
    k_duration_num = _kw("duration_num")
    k_end = _kw("end")
    k_error = _kw("error")
    k_expiration_log = _kw("expiration_log")
    k_expiration_num = _kw("expiration_num")
    k_expression = _kw("expression")
    k_false = _kw("false")
    k_fifo_files = _kw("fifo_files")
    k_filter = _kw("filter")
    k_first = _kw("first")
    k_float = _kw("float")
    k_for = _kw("for")
    k_from = _kw("from")
    k_full = _kw("full")
    k_grant = _kw("grant")
    k_group = _kw("group")
    k_groups = _kw("groups")
    k_head = _kw("head")
    k_help = Choice(_kw("help"), Token("?"))
    k_idle_percentage = _kw("idle_percentage")
    k_idle_time = _kw("idle_time")
    k_ignore_threshold = _kw("ignore_threshold")
    k_inf = _kw("inf")
    k_info = _kw("info")
    k_insert = _kw("insert")
    k_integer = _kw("integer")
    k_intersection = _first(Token("&"), _kw("intersection"))
    k_interval = _kw("interval")
    k_ip_support = _kw("ip_support")
    k_last = _kw("last")
    k_length = _kw("length")
    k_libuv = _kw("libuv")
    k_limit = _kw("limit")
    k_list = _kw("list")
    k_list_limit = _kw("list_limit")
    k_log = _kw("log")
    k_log_level = _kw("log_level")
    k_max = _kw("max")
    k_max_open_files = _kw("max_open_files")
    k_mean = _kw("mean")
    k_median = _kw("median")
    k_median_high = _kw("median_high")
    k_median_low = _kw("median_low")
    k_mem_usage = _kw("mem_usage")
    k_merge = _kw("merge")
    k_min = _kw("min")
    k_modify = _kw("modify")
    k_name = _kw("name")
    k_nan = _kw("nan")
    k_ninf = Sequence(Token("-"), k_inf)
    k_now = _kw("now")
    k_number = _kw("number")
    k_offset = _kw("offset")
    k_online = _kw("online")
    k_open_files = _kw("open_files")
    k_or = SiriGrammarBase.k_or
    k_password = _kw("password")
    k_points = _kw("points")
    k_pool = _kw("pool")
    k_pools = _kw("pools")
    k_port = _kw("port")
    k_prefix = _kw("prefix")
    k_pvariance = _kw("pvariance")
    k_read = _kw("read")
    k_received_points = _kw("received_points")
    k_reindex_progress = _kw("reindex_progress")
    k_revoke = _kw("revoke")
    k_select = _kw("select")
    k_select_points_limit = _kw("select_points_limit")
    k_selected_points = _kw("selected_points")
    k_series = _kw("series")
    k_server = _kw("server")
    k_servers = _kw("servers")
    k_set = _kw("set")
    k_shard_duration = _kw("shard_duration")
    k_shards = _kw("shards")
    k_show = _kw("show")
    k_sid = _kw("sid")
    k_size = _kw("size")
    k_start = _kw("start")
    k_startup_time = _kw("startup_time")
    k_status = _kw("status")
    k_stddev = _kw("stddev")
    k_string = _kw("string")
    k_suffix = _kw("suffix")
    k_sum = _kw("sum")
    k_symmetric_difference = _first(Token("^"), _kw("symmetric_difference"))
    k_sync_progress = _kw("sync_progress")
    k_tag = _kw("tag")
    k_tags = _kw("tags")
    k_tail = _kw("tail")
    k_tee = _kw("tee")
    k_time_precision = _kw("time_precision")
    k_timeit = _kw("timeit")
    k_timeval = _kw("timeval")
    k_timezone = _kw("timezone")
    k_to = _kw("to")
    k_true = _kw("true")
    k_type = _kw("type")
    k_union = _first(Tokens(", |"), _kw("union"))
    k_untag = _kw("untag")
    k_uptime = _kw("uptime")
    k_user = _kw("user")
    k_users = _kw("users")
    k_using = _kw("using")
    k_uuid = _kw("uuid")
    k_variance = _kw("variance")
    k_version = _kw("version")
    k_warning = _kw("warning")
    k_where = SiriGrammarBase.k_where
    k_who_am_i = _kw("who_am_i")
    k_write = _kw("write")
    c_difference = _first(Token("-"), k_difference)

    access_keywords = _first(
        k_read, k_write, k_modify, k_full, k_select, k_show, k_list, k_count,
        k_create, k_insert, k_drop, k_grant, k_revoke, k_alter,
    )
    boolean = _first(k_true, k_false)
    log_keywords = _first(k_debug, k_info, k_warning, k_error, k_critical)

    # -- expressions -------------------------------------------------------------------
    int_expr = Prio(
        r_integer,
        Sequence("(", THIS, ")"),
        Sequence(THIS, Tokens("+ - * % /"), THIS),
    )
    string = _first(r_singleq_str, r_doubleq_str)
    time_expr = Prio(
        r_time_str,
        k_now,
        string,
        r_integer,
        Sequence("(", THIS, ")"),
        Sequence(THIS, Tokens("+ - * % /"), THIS),
    )

    # -- columns -----------------------------------------------------------------------
    series_columns = List(
        _first(k_name, k_type, k_length, k_start, k_end, k_shard_duration, k_pool), ",", 1)
    shard_columns = List(
        _first(k_sid, k_pool, k_server, k_size, k_start, k_end, k_type, k_status), ",", 1)
    server_columns = List(
        _first(
            k_address, k_buffer_path, k_buffer_size, k_dbpath, k_ip_support, k_libuv,
            k_name, k_port, k_uuid, k_pool, k_version, k_online, k_startup_time, k_status,
            k_active_handles, k_active_tasks, k_fifo_files, k_idle_percentage, k_idle_time,
            k_log_level, k_max_open_files, k_mem_usage, k_open_files, k_received_points,
            k_reindex_progress, k_selected_points, k_sync_progress, k_tee, k_uptime,
        ),
        ",",
        1,
    )
    group_columns = List(_first(k_expression, k_name, k_series), ",", 1)
    user_columns = List(_first(k_name, k_access), ",", 1)
    tag_columns = List(_first(k_name, k_series), ",", 1)
    pool_props = _first(k_pool, k_servers, k_series)
    pool_columns = List(pool_props, ",", 1)

    bool_operator = Tokens("== !=")
    int_operator = Tokens("< > == != <= >=")
    str_operator = Tokens("< > == != <= >= ~ !~")

    # -- where clauses -----------------------------------------------------------------
    where_group = _where(
        Sequence(k_series, int_operator, int_expr),
        Sequence(_first(k_expression, k_name), str_operator, string),
    )
    where_tag = _where(
        Sequence(k_name, str_operator, string),
        Sequence(k_series, int_operator, int_expr),
    )
    where_pool = _where(Sequence(pool_props, int_operator, int_expr))
    where_series = _where(
        Sequence(_first(k_length, k_pool), int_operator, int_expr),
        Sequence(k_name, str_operator, string),
        Sequence(_first(k_start, k_end), int_operator, time_expr),
        Sequence(k_type, bool_operator, _first(k_string, k_integer, k_float)),
    )
    where_server = _where(
        Sequence(
            _first(
                k_active_handles, k_active_tasks, k_buffer_size, k_fifo_files,
                k_idle_percentage, k_idle_time, k_port, k_pool, k_startup_time,
                k_max_open_files, k_mem_usage, k_open_files, k_received_points,
                k_selected_points, k_uptime,
            ),
            int_operator,
            int_expr,
        ),
        Sequence(
            _first(
                k_address, k_buffer_path, k_dbpath, k_ip_support, k_libuv, k_name, k_uuid,
                k_version, k_status, k_reindex_progress, k_sync_progress, k_tee,
            ),
            str_operator,
            string,
        ),
        Sequence(k_online, bool_operator, boolean),
        Sequence(k_log_level, int_operator, log_keywords),
    )
    where_shard = _where(
        Sequence(_first(k_sid, k_pool, k_size), int_operator, int_expr),
        Sequence(_first(k_server, k_status), str_operator, string),
        Sequence(_first(k_start, k_end), int_operator, time_expr),
        Sequence(k_type, bool_operator, _first(k_number, k_log)),
    )
    where_user = _where(
        Sequence(k_name, str_operator, string),
        Sequence(k_access, int_operator, access_keywords),
    )

    # -- series matching ---------------------------------------------------------------
    series_setopr = _first(k_union, c_difference, k_intersection, k_symmetric_difference)
    series_all = _first(Token("*"), k_all)
    series_name = Repeat(string, 1, 1)
    group_tag_match = Repeat(r_grave_str, 1, 1)
    series_re = Repeat(r_regex, 1, 1)
    group_name = Repeat(r_grave_str, 1, 1)
    tag_name = Repeat(r_grave_str, 1, 1)
    uuid = _first(r_uuid_str, string)
    series_match = Prio(
        List(
            _first(series_all, series_name, group_tag_match, series_re),
            series_setopr,
            1,
        ),
        _first(series_all, series_name, group_tag_match, series_re),
        Sequence("(", THIS, ")"),
        Sequence(THIS, series_setopr, THIS),
    )

    limit_expr = Sequence(k_limit, int_expr)
    before_expr = Sequence(k_before, time_expr)
    after_expr = Sequence(k_after, time_expr)
    between_expr = Sequence(k_between, time_expr, k_and, time_expr)
    head_expr = Sequence(k_head, int_expr)
    tail_expr = Sequence(k_tail, int_expr)
    access_expr = List(access_keywords, ",", 1)
    prefix_expr = Sequence(k_prefix, string)
    suffix_expr = Sequence(k_suffix, string)

    # -- aggregate functions -----------------------------------------------------------
    f_all = _first(Token("*"), k_all)
    f_points = Repeat(k_points, 1, 1)
    f_offset = Sequence(k_offset, "(", time_expr, ")")
    f_limit = Sequence(
        k_limit,
        "(",
        int_expr,
        ",",
        _first(
            k_mean, k_median, k_median_high, k_median_low, k_sum, k_min, k_max, k_count,
            k_variance, k_pvariance, k_stddev, k_first, k_last,
        ),
        ")",
    )
    f_mean = Sequence(k_mean, "(", Optional(time_expr), ")")
    f_sum = Sequence(k_sum, "(", Optional(time_expr), ")")
    f_median = Sequence(k_median, "(", Optional(time_expr), ")")
    f_median_low = Sequence(k_median_low, "(", Optional(time_expr), ")")
    f_median_high = Sequence(k_median_high, "(", Optional(time_expr), ")")
    f_min = Sequence(k_min, "(", Optional(time_expr), ")")
    f_max = Sequence(k_max, "(", Optional(time_expr), ")")
    f_count = Sequence(k_count, "(", Optional(time_expr), ")")
    f_variance = Sequence(k_variance, "(", Optional(time_expr), ")")
    f_pvariance = Sequence(k_pvariance, "(", Optional(time_expr), ")")
    f_stddev = Sequence(k_stddev, "(", Optional(time_expr), ")")
    f_first = Sequence(k_first, "(", Optional(time_expr), ")")
    f_last = Sequence(k_last, "(", Optional(time_expr), ")")
    f_timeval = Sequence(k_timeval, "(", Optional(time_expr), ")")
    f_interval = Sequence(k_interval, "(", Optional(time_expr), ")")
    f_difference = Sequence(k_difference, "(", Optional(time_expr), ")")
    f_derivative = Sequence(k_derivative, "(", List(time_expr, ",", 0, 2), ")")
    f_filter = Sequence(
        k_filter,
        "(",
        Optional(str_operator),
        Choice(string, r_integer, r_float, r_regex, k_nan, k_inf, k_ninf, most_greedy=True),
        ")",
    )
    aggregate_functions = List(
        _first(
            f_all, f_offset, f_limit, f_mean, f_sum, f_median, f_median_low, f_median_high,
            f_min, f_max, f_count, f_variance, f_pvariance, f_stddev, f_first, f_last,
            f_timeval, f_interval, f_difference, f_derivative, f_filter, f_points,
        ),
        "=>",
        1,
    )
    select_aggregate = Sequence(aggregate_functions, Optional(prefix_expr), Optional(suffix_expr))
    select_aggregates = List(select_aggregate, ",", 1)
    merge_as = Sequence(
        k_merge, k_as, string, Optional(Sequence(k_using, aggregate_functions)))

    # -- set clauses -------------------------------------------------------------------
    set_address = Sequence(k_set, k_address, string)
    set_backup_mode = Sequence(k_set, k_backup_mode, boolean)
    set_drop_threshold = Sequence(k_set, k_drop_threshold, r_float)
    set_expression = Sequence(k_set, k_expression, r_regex)
    set_ignore_threshold = Sequence(k_set, k_ignore_threshold, boolean)
    set_list_limit = Sequence(k_set, k_list_limit, r_uinteger)
    set_log_level = Sequence(k_set, k_log_level, log_keywords)
    set_name = Sequence(k_set, k_name, string)
    set_password = Sequence(k_set, k_password, string)
    set_port = Sequence(k_set, k_port, r_uinteger)
    set_select_points_limit = Sequence(k_set, k_select_points_limit, r_uinteger)
    set_timezone = Sequence(k_set, k_timezone, string)
    set_expiration_num = Sequence(
        k_set, k_expiration_num, time_expr, Optional(set_ignore_threshold))
    set_expiration_log = Sequence(
        k_set, k_expiration_log, time_expr, Optional(set_ignore_threshold))
    tag_series = Sequence(k_tag, tag_name)
    untag_series = Sequence(k_untag, tag_name)

    # -- statements --------------------------------------------------------------------
    alter_database = Sequence(
        k_database,
        _first(
            set_drop_threshold, set_list_limit, set_select_points_limit, set_timezone,
            set_expiration_num, set_expiration_log,
        ),
    )
    alter_group = Sequence(k_group, group_name, _first(set_expression, set_name))
    alter_tag = Sequence(k_tag, tag_name, set_name)
    alter_server = Sequence(
        k_server, uuid, _first(set_log_level, set_backup_mode, set_address, set_port))
    alter_servers = Sequence(k_servers, Optional(where_server), set_log_level)
    alter_user = Sequence(k_user, string, _first(set_password, set_name))
    alter_series = Sequence(
        k_series, series_match, Optional(where_series), _first(tag_series, untag_series))

    count_groups = Sequence(k_groups, Optional(where_group))
    count_tags = Sequence(k_tags, Optional(where_tag))
    count_pools = Sequence(k_pools, Optional(where_pool))
    count_series = Sequence(k_series, Optional(series_match), Optional(where_series))
    count_servers = Sequence(k_servers, Optional(where_server))
    count_servers_received = Sequence(k_servers, k_received_points, Optional(where_server))
    count_servers_selected = Sequence(k_servers, k_selected_points, Optional(where_server))
    count_shards = Sequence(k_shards, Optional(where_shard))
    count_shards_size = Sequence(k_shards, k_size, Optional(where_shard))
    count_users = Sequence(k_users, Optional(where_user))
    count_series_length = Sequence(
        k_series, k_length, Optional(series_match), Optional(where_series))

    create_group = Sequence(k_group, group_name, k_for, r_regex)
    create_user = Sequence(k_user, string, set_password)

    drop_group = Sequence(k_group, group_name)
    drop_tag = Sequence(k_tag, tag_name)
    drop_series = Sequence(
        k_series, Optional(series_match), Optional(where_series), Optional(set_ignore_threshold))
    drop_shards = Sequence(k_shards, Optional(where_shard), Optional(set_ignore_threshold))
    drop_server = Sequence(k_server, uuid)
    drop_user = Sequence(k_user, string)

    grant_user = Sequence(k_user, string, Optional(set_password))
    revoke_user = Sequence(k_user, string)

    list_groups = Sequence(k_groups, Optional(group_columns), Optional(where_group))
    list_tags = Sequence(k_tags, Optional(tag_columns), Optional(where_tag))
    list_pools = Sequence(k_pools, Optional(pool_columns), Optional(where_pool))
    list_series = Sequence(
        k_series, Optional(series_columns), Optional(series_match), Optional(where_series))
    list_servers = Sequence(k_servers, Optional(server_columns), Optional(where_server))
    list_shards = Sequence(k_shards, Optional(shard_columns), Optional(where_shard))
    list_users = Sequence(k_users, Optional(user_columns), Optional(where_user))

    alter_stmt = Sequence(
        k_alter,
        _first(
            alter_series, alter_user, alter_group, alter_tag, alter_server, alter_servers,
            alter_database,
        ),
    )
    calc_stmt = Repeat(time_expr, 1, 1)
    count_stmt = Sequence(
        k_count,
        Choice(
            count_groups, count_pools, count_series, count_servers, count_servers_received,
            count_servers_selected, count_shards, count_shards_size, count_users, count_tags,
            count_series_length,
            most_greedy=True,
        ),
    )
    create_stmt = Sequence(k_create, Choice(create_group, create_user, most_greedy=True))
    drop_stmt = Sequence(
        k_drop,
        _first(drop_group, drop_tag, drop_series, drop_shards, drop_server, drop_user),
    )
    grant_stmt = Sequence(k_grant, access_expr, k_to, _first(grant_user))
    list_stmt = Sequence(
        k_list,
        _first(
            list_series, list_tags, list_users, list_shards, list_groups, list_servers,
            list_pools,
        ),
        Optional(limit_expr),
    )
    revoke_stmt = Sequence(k_revoke, access_expr, k_from, _first(revoke_user))
    select_stmt = Sequence(
        k_select,
        select_aggregates,
        k_from,
        series_match,
        Optional(where_series),
        Optional(_first(after_expr, between_expr, before_expr)),
        Optional(_first(head_expr, tail_expr)),
        Optional(merge_as),
    )
    show_stmt = Sequence(
        k_show,
        List(
            _first(
                k_active_handles, k_active_tasks, k_buffer_path, k_buffer_size, k_dbname,
                k_dbpath, k_drop_threshold, k_duration_log, k_duration_num, k_fifo_files,
                k_expiration_log, k_expiration_num, k_idle_percentage, k_idle_time,
                k_ip_support, k_libuv, k_list_limit, k_log_level, k_max_open_files,
                k_mem_usage, k_open_files, k_pool, k_received_points, k_reindex_progress,
                k_selected_points, k_select_points_limit, k_server, k_startup_time,
                k_status, k_sync_progress, k_tee, k_time_precision, k_timezone, k_uptime,
                k_uuid, k_version, k_who_am_i,
            ),
            ",",
            0,
        ),
    )
    timeit_stmt = Repeat(k_timeit, 1, 1)
    r_help_word = Regex(r"[a-z_]+", re.IGNORECASE)
    help_stmt = Sequence(k_help, Repeat(r_help_word, 0))

    START = Sequence(
        Optional(timeit_stmt),
        Optional(
            _first(
                select_stmt, list_stmt, count_stmt, alter_stmt, create_stmt, drop_stmt,
                grant_stmt, revoke_stmt, show_stmt, calc_stmt, help_stmt,
            )
        ),
        Optional(r_comment),
    )

    def parse(self, string: str) -> Result:  # type: ignore[override]
        self._s = ""
        self._string = string
        self._expecting = _OrderedExpecting()  # type: ignore[assignment]
        self._cached_kw_match.clear()
        self._len_string = len(string)
        self._pos = -1
        tree = Node(self._element, string, 0, self._len_string)
        is_valid, pos = self._walk(self._element, 0, tree.children, self._element, True)
        result = Result(is_valid, pos, tree)
        rest = string[pos:]
        stripped = rest.lstrip()
        if stripped:
            result.is_valid = False
            if not self._expecting.required:
                end = pos + len(rest) - len(stripped)
                self._expecting.set_mode_required(end, True)
                self._expecting.update(end_of_statement, end)
        result.expecting = self._expecting.ordered()  # type: ignore[assignment]
        if not result.is_valid:
            result.pos = self._expecting.pos
        return result


_PARSER = SiriGrammar()

#: Readable names of regular expressions in error messages, as the real server prints.
_REGEX_NAMES = {
    id(SiriGrammar.r_singleq_str): "single_quote_str",
    id(SiriGrammar.r_doubleq_str): "double_quote_str",
    id(SiriGrammar.r_integer): "integer",
    id(SiriGrammar.r_float): "float",
    id(SiriGrammar.r_uuid_str): "uuid",
    id(SiriGrammar.r_time_str): "date/time_string",
}


def _expect_name(element: Any) -> str | None:
    if element is end_of_statement:
        return "end_of_statement"
    if isinstance(element, Keyword):
        return element._keyword
    if isinstance(element, Tokens):
        return " ".join(element._tokens)
    if isinstance(element, Token):
        return element._token
    return _REGEX_NAMES.get(id(element))


class ParseFailure(Exception):
    """A syntax error; ``str()`` is the exact message the real server sends."""


def parse(query: str) -> Node:
    """Parse ``query``; returns the START node or raises :class:`ParseFailure`."""
    try:
        result = _PARSER.parse(query)
    except (MaxRecursionError, RecursionError) as exc:
        raise ParseFailure("Query error: the query is nested too deeply.") from exc
    if result.is_valid:
        return result.tree.children[0]
    names = [n for n in (_expect_name(e) for e in result.expecting) if n is not None]
    msg = f"Query error at position {result.pos}. Expecting "
    if len(names) > 1:
        msg += ", ".join(names[:-1]) + " or " + names[-1]
    elif names:
        msg += names[0]
    raise ParseFailure(msg)
