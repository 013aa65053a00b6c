"""The SiriDB 2.0.55 query language: its grammar, element for element, and syntax errors.

The elements and the order of their alternatives are those of the real server's grammar
(``src/siri/grammar/grammar.c``), parsed with :mod:`.cleri`, so the same queries parse,
into the same trees, and a syntax error lists the same expected elements in the same
order. Keywords are case-sensitive, as in SiriDB.
"""

from __future__ import annotations

import re
import sys
from typing import Final

from tsconnector.server.query.cleri import (
    END_OF_STATEMENT,
    THIS,
    Choice,
    DepthExceeded,
    Element,
    Keyword,
    List,
    Node,
    Optional,
    Prio,
    Ref,
    Regex,
    Sequence,
    Token,
    Tokens,
    byte_offset,
    dup,
)
from tsconnector.server.query.cleri import parse as cleri_parse

__all__ = ["G", "ParseFailure", "SiriGrammar", "parse", "truncate_error"]

#: SiriDB keeps error messages in a buffer of this many bytes (the last one ends it).
MAX_ERROR_BYTES: Final = 1024

_RE_KEYWORDS = re.compile(r"[a-z_]+")


def _kw(word: str) -> Keyword:
    return Keyword(word)


def _first(*elements: Element | str) -> Choice:
    return Choice(*elements, most_greedy=False)


def _greedy(*elements: Element | str) -> Choice:
    return Choice(*elements, most_greedy=True)


def _cols(*elements: Element) -> List:
    return List(_first(*elements), ",", 1)


_K_WHERE = _kw("where")
_K_AND = _kw("and")
_K_OR = _kw("or")


def _where(*conditions: Element) -> Sequence:
    """``where`` and conditions combined with parentheses, ``and`` and ``or``."""
    return Sequence(
        _K_WHERE,
        Prio(
            *conditions,
            Sequence("(", THIS, ")"),
            Sequence(THIS, _K_AND, THIS),
            Sequence(THIS, _K_OR, THIS),
        ),
    )


class SiriGrammar:
    """Every named element of the grammar as a class attribute (names as in SiriDB)."""

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
    k_and = _K_AND
    k_as = _kw("as")
    k_backup_mode = _kw("backup_mode")
    k_before = _kw("before")
    k_between = _kw("between")
    k_buffer_path = _kw("buffer_path")
    k_buffer_size = _kw("buffer_size")
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
    k_help = _greedy(_kw("help"), Token("?"))
    k_idle_percentage = _kw("idle_percentage")
    k_idle_time = _kw("idle_time")
    k_inf = _kw("inf")
    k_info = _kw("info")
    k_ignore_threshold = _kw("ignore_threshold")
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
    k_or = _K_OR
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
    k_where = _K_WHERE
    k_who_am_i = _kw("who_am_i")
    k_write = _kw("write")
    c_difference = _first(Token("-"), k_difference)

    access_keywords = _first(
        k_read, k_write, k_modify, k_full, k_select, k_show, k_list, k_count, k_create,
        k_insert, k_drop, k_grant, k_revoke, k_alter,
    )
    _boolean = _first(k_true, k_false)
    log_keywords = _first(k_debug, k_info, k_warning, k_error, k_critical)
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
    series_columns = _cols(
        k_name, k_type, k_length, k_start, k_end, k_shard_duration, k_pool)
    shard_columns = _cols(
        k_sid, k_pool, k_server, k_size, k_start, k_end, k_type, k_status)
    server_columns = _cols(
        k_address, k_buffer_path, k_buffer_size, k_dbpath, k_ip_support, k_libuv, k_name,
        k_port, k_uuid, k_pool, k_version, k_online, k_startup_time, k_status,
        k_active_handles, k_active_tasks, k_fifo_files, k_idle_percentage, k_idle_time,
        k_log_level, k_max_open_files, k_mem_usage, k_open_files, k_received_points,
        k_reindex_progress, k_selected_points, k_sync_progress, k_uptime,
    )
    group_columns = _cols(k_expression, k_name, k_series)
    user_columns = _cols(k_name, k_access)
    tag_columns = _cols(k_name, k_series)
    pool_props = _first(k_pool, k_servers, k_series)
    pool_columns = List(pool_props, ",", 1)
    bool_operator = Tokens("== !=")
    int_operator = Tokens("== != <= >= < >")
    str_operator = Tokens("== != <= >= !~ < > ~")

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
        Sequence(_first(k_start, k_end, k_shard_duration), int_operator, time_expr),
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
                k_version, k_status, k_reindex_progress, k_sync_progress,
            ),
            str_operator,
            string,
        ),
        Sequence(k_online, bool_operator, _boolean),
        Sequence(k_log_level, int_operator, log_keywords),
    )
    where_shard = _where(
        Sequence(_first(k_sid, k_pool, k_size), int_operator, int_expr),
        Sequence(_greedy(k_server, k_status), str_operator, string),
        Sequence(_first(k_start, k_end), int_operator, time_expr),
        Sequence(k_type, bool_operator, _first(k_number, k_log)),
    )
    where_user = _where(
        Sequence(k_name, str_operator, string),
        Sequence(k_access, int_operator, access_keywords),
    )
    series_setopr = _first(k_union, c_difference, k_intersection, k_symmetric_difference)
    series_parentheses = Sequence("(", THIS, ")")
    series_all = _first(Token("*"), k_all)
    series_name = dup(string)
    group_name = dup(r_grave_str)
    tag_name = dup(r_grave_str)
    series_re = dup(r_regex)
    uuid = _first(r_uuid_str, string)
    group_tag_match = dup(r_grave_str)
    series_match = Prio(
        List(_first(series_all, series_name, group_tag_match, series_re), series_setopr, 1),
        _first(series_all, series_name, group_tag_match, series_re),
        series_parentheses,
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
    f_all = _first(Token("*"), k_all)
    f_points = dup(k_points)
    f_difference = Sequence(k_difference, "(", Optional(time_expr), ")")
    f_derivative = Sequence(k_derivative, "(", List(time_expr, ",", 0, 2), ")")
    f_mean = Sequence(k_mean, "(", Optional(time_expr), ")")
    f_median = Sequence(k_median, "(", Optional(time_expr), ")")
    f_median_low = Sequence(k_median_low, "(", Optional(time_expr), ")")
    f_median_high = Sequence(k_median_high, "(", Optional(time_expr), ")")
    f_sum = Sequence(k_sum, "(", Optional(time_expr), ")")
    f_min = Sequence(k_min, "(", Optional(time_expr), ")")
    f_max = Sequence(k_max, "(", Optional(time_expr), ")")
    f_count = Sequence(k_count, "(", Optional(time_expr), ")")
    f_variance = Sequence(k_variance, "(", Optional(time_expr), ")")
    f_pvariance = Sequence(k_pvariance, "(", Optional(time_expr), ")")
    f_stddev = Sequence(k_stddev, "(", Optional(time_expr), ")")
    f_first = Sequence(k_first, "(", Optional(time_expr), ")")
    f_last = Sequence(k_last, "(", Optional(time_expr), ")")
    f_offset = Sequence(k_offset, "(", time_expr, ")")
    f_timeval = Sequence(k_timeval, "(", ")")
    f_interval = Sequence(k_interval, "(", ")")
    f_filter = Sequence(
        k_filter,
        "(",
        Optional(str_operator),
        _greedy(string, r_integer, r_float, r_regex, k_nan, k_inf, k_ninf),
        ")",
    )
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
    aggregate_functions = List(
        _first(
            f_all, f_offset, f_limit, f_mean, f_sum, f_median, f_median_low, f_median_high,
            f_min, f_max, f_count, f_variance, f_pvariance, f_stddev, f_first, f_last,
            f_timeval, f_interval, f_difference, f_derivative, f_filter, f_points,
        ),
        "=>",
        1,
    )
    select_aggregate = Sequence(
        aggregate_functions, Optional(prefix_expr), Optional(suffix_expr))
    select_aggregates = List(select_aggregate, ",", 1)
    merge_as = Sequence(
        k_merge, k_as, string, Optional(Sequence(k_using, aggregate_functions)))
    set_address = Sequence(k_set, k_address, string)
    set_tee = Sequence(k_set, k_tee, _first(k_false, string))
    set_backup_mode = Sequence(k_set, k_backup_mode, _boolean)
    set_drop_threshold = Sequence(k_set, k_drop_threshold, r_float)
    set_expression = Sequence(k_set, k_expression, r_regex)
    set_ignore_threshold = Sequence(k_set, k_ignore_threshold, _boolean)
    set_list_limit = Sequence(k_set, k_list_limit, r_uinteger)
    set_log_level = Sequence(k_set, k_log_level, log_keywords)
    set_name = Sequence(k_set, k_name, string)
    set_password = Sequence(k_set, k_password, string)
    set_port = Sequence(k_set, k_port, r_uinteger)
    set_select_points_limit = Sequence(k_set, k_select_points_limit, r_uinteger)
    set_timezone = Sequence(k_set, k_timezone, string)
    tag_series = Sequence(k_tag, tag_name)
    untag_series = Sequence(k_untag, tag_name)
    set_expiration_num = Sequence(
        k_set, k_expiration_num, time_expr, Optional(set_ignore_threshold))
    set_expiration_log = Sequence(
        k_set, k_expiration_log, time_expr, Optional(set_ignore_threshold))
    alter_database = Sequence(
        k_database,
        _first(
            set_drop_threshold, set_list_limit, set_select_points_limit, set_timezone,
            set_expiration_num, set_expiration_log, set_tee,
        ),
    )
    alter_group = Sequence(k_group, group_name, _first(set_expression, set_name))
    alter_tag = Sequence(k_tag, tag_name, _first(set_name))
    alter_server = Sequence(
        k_server, uuid, _first(set_log_level, set_backup_mode, set_address, set_port))
    alter_servers = Sequence(k_servers, Optional(where_server), _first(set_log_level))
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
    list_groups = Sequence(k_groups, Optional(group_columns), Optional(where_group))
    list_tags = Sequence(k_tags, Optional(tag_columns), Optional(where_tag))
    list_pools = Sequence(k_pools, Optional(pool_columns), Optional(where_pool))
    list_series = Sequence(
        k_series, Optional(series_columns), Optional(series_match), Optional(where_series))
    list_servers = Sequence(k_servers, Optional(server_columns), Optional(where_server))
    list_shards = Sequence(k_shards, Optional(shard_columns), Optional(where_shard))
    list_users = Sequence(k_users, Optional(user_columns), Optional(where_user))
    revoke_user = Sequence(k_user, string)
    alter_stmt = Sequence(
        k_alter,
        _first(
            alter_series, alter_user, alter_group, alter_tag, alter_server, alter_servers,
            alter_database,
        ),
    )
    calc_stmt = dup(time_expr)
    count_stmt = Sequence(
        k_count,
        _greedy(
            count_groups, count_pools, count_series, count_servers, count_servers_received,
            count_servers_selected, count_shards, count_shards_size, count_users,
            count_tags, count_series_length,
        ),
    )
    create_stmt = Sequence(k_create, _greedy(create_group, create_user))
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
        Optional(_first(after_expr, between_expr, before_expr, tail_expr, head_expr)),
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
    timeit_stmt = dup(k_timeit)
    help_stmt = Ref()
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
    help_access = _kw("access")
    help_alter_database = _kw("database")
    help_alter_group = _kw("group")
    help_alter_server = _kw("server")
    help_alter_servers = _kw("servers")
    help_alter_user = _kw("user")
    help_alter = Sequence(
        k_alter,
        Optional(_greedy(
            help_alter_database, help_alter_group, help_alter_server, help_alter_servers,
            help_alter_user,
        )),
    )
    help_count_groups = _kw("groups")
    help_count_pools = _kw("pools")
    help_count_series = _kw("series")
    help_count_servers = _kw("servers")
    help_count_shards = _kw("shards")
    help_count_users = _kw("users")
    help_count = Sequence(
        k_count,
        Optional(_greedy(
            help_count_groups, help_count_pools, help_count_series, help_count_servers,
            help_count_shards, help_count_users,
        )),
    )
    help_create_group = _kw("group")
    help_create_user = _kw("user")
    help_create = Sequence(k_create, Optional(_greedy(help_create_group, help_create_user)))
    help_drop_group = _kw("group")
    help_drop_series = _kw("series")
    help_drop_server = _kw("server")
    help_drop_shards = _kw("shards")
    help_drop_user = _kw("user")
    help_drop = Sequence(
        k_drop,
        Optional(_greedy(
            help_drop_group, help_drop_series, help_drop_server, help_drop_shards,
            help_drop_user,
        )),
    )
    help_functions = _kw("functions")
    help_grant = _kw("grant")
    help_list_groups = _kw("groups")
    help_list_pools = _kw("pools")
    help_list_series = _kw("series")
    help_list_servers = _kw("servers")
    help_list_shards = _kw("shards")
    help_list_users = _kw("users")
    help_list = Sequence(
        k_list,
        Optional(_greedy(
            help_list_groups, help_list_pools, help_list_series, help_list_servers,
            help_list_shards, help_list_users,
        )),
    )
    help_noaccess = _kw("noaccess")
    help_revoke = _kw("revoke")
    help_select = _kw("select")
    help_show = _kw("show")
    help_timeit = _kw("timeit")
    help_timezones = _kw("timezones")
    help_stmt.target = Sequence(
        k_help,
        Optional(_greedy(
            help_access, help_alter, help_count, help_create, help_drop, help_functions,
            help_grant, help_list, help_noaccess, help_revoke, help_select, help_show,
            help_timeit, help_timezones,
        )),
    )


def _name_elements() -> None:
    for name, value in vars(SiriGrammar).items():
        if isinstance(value, Element) and value.name is None:
            value.name = name
    target = SiriGrammar.help_stmt.target
    assert target is not None
    target.name = "help_stmt"


_name_elements()

#: Short alias used by the builder.
G = SiriGrammar

#: Readable names of regular expressions in a syntax error, as SiriDB prints them.
_REGEX_NAMES: Final = {
    "r_singleq_str": "single_quote_str",
    "r_doubleq_str": "double_quote_str",
    "r_grave_str": "grave_str",
    "r_integer": "integer",
    "r_float": "float",
    "r_uuid_str": "uuid",
    "r_time_str": "date/time_string",
    "r_regex": "regular_expression",
}

#: Recursion needed per nesting level of parentheses in a rule (Python frames).
_FRAMES_PER_LEVEL: Final = 8


def _expect_name(element: Element) -> str | None:
    if element is END_OF_STATEMENT:
        return "end_of_statement"
    if isinstance(element, Keyword):
        return element.word
    if isinstance(element, Tokens):
        return element.spaced
    if isinstance(element, Token):
        return element.token
    return _REGEX_NAMES.get(element.name or "")


class ParseFailure(Exception):
    """A syntax error; ``str()`` is the exact message the real server sends."""


def truncate_error(message: str) -> str:
    """An error message cut where SiriDB's fixed-size buffer cuts it."""
    data = message.encode("utf-8", "surrogateescape")
    if len(data) < MAX_ERROR_BYTES:
        return message
    return data[: MAX_ERROR_BYTES - 1].decode("utf-8", "ignore")


def parse(query: str) -> Node:
    """Parse ``query``; returns the START node or raises :class:`ParseFailure`."""
    depth = query.count("(") * _FRAMES_PER_LEVEL + 1000
    if depth > sys.getrecursionlimit():
        sys.setrecursionlimit(depth)
    try:
        result = cleri_parse(SiriGrammar.START, query, _RE_KEYWORDS)
    except (DepthExceeded, RecursionError) as exc:
        raise ParseFailure(
            "Memory allocation error or maximum recursion depth reached.") from exc
    if result.is_valid:
        return result.tree.children[0]
    names = [_expect_name(e) for e in result.expecting]
    msg = f"Query error at position {byte_offset(query, result.pos)}. Expecting "
    count = 0
    last = len(names) - 1
    for i, name in enumerate(names):
        if name is None:
            continue
        if count == 0:
            msg += name
        elif i == last:
            msg += " or " + name
        else:
            msg += ", " + name
        count += 1
    raise ParseFailure(truncate_error(msg))


# Grammar elements the builder refers to by identity.
__all__ += ["Keyword", "Node", "Token", "Tokens"]
