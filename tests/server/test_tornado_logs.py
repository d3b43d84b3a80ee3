"""Tornado's log lines keep what went wrong, not the value a client sent."""

from __future__ import annotations

import logging

from tornado.httputil import HTTPInputError

from app.server.tornado_logs import ClientValuesFilter, without_values


def test_an_input_error_keeps_its_description_and_loses_its_value() -> None:
    assert without_values(HTTPInputError("Invalid header value 'tok3n\\x01'")) == "Invalid header value [redacted]"
    assert without_values(HTTPInputError("Only integer Content-Length is allowed: abc")) == (
        "Only integer Content-Length is allowed [redacted]")
    assert without_values(HTTPInputError("Content-Length too long")) == "Content-Length too long"


def test_the_malformed_message_line_has_no_header_value() -> None:
    record = logging.LogRecord("tornado.general", logging.INFO, __file__, 1, "Malformed HTTP message from %s: %s",
                               ("127.0.0.1", HTTPInputError("Invalid header value 'tok3n'")), None)
    assert ClientValuesFilter().filter(record)
    assert record.getMessage() == "Malformed HTTP message from 127.0.0.1: Invalid header value [redacted]"


def test_an_input_error_traceback_is_replaced_by_its_description() -> None:
    try:
        raise HTTPInputError("Invalid Host header: 'tok3n'")
    except HTTPInputError:
        record = logging.LogRecord("tornado.application", logging.ERROR, __file__, 1, "Uncaught exception", (),
                                   __import__("sys").exc_info())
    ClientValuesFilter().filter(record)
    assert record.exc_info is None
    assert "tok3n" not in logging.Formatter().format(record)
    assert "Invalid Host header [redacted]" in record.getMessage()
