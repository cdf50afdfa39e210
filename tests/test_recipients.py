"""Recipient import: formats, encodings, header/column detection, validation, dedupe, robustness."""

from __future__ import annotations

import csv
import datetime
import io
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.errors import RecipientFileError
from backend.recipients import (
    Duplicate,
    ImportResult,
    Recipient,
    Rejected,
    load_bytes,
    load_file,
    parse_text,
)


def write(tmp_path: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def emails(result: ImportResult) -> list[str]:
    return [r.email for r in result.recipients]


def lines(result: ImportResult) -> dict[str, int]:
    return {r.email: r.line for r in result.recipients}


# --- the Recipient class and the result ---------------------------------------------------


def test_recipient_is_frozen_with_email_fields_line() -> None:
    r = Recipient("a@x.example", {"email": "a@x.example"}, 3)
    assert (r.email, r.fields, r.line) == ("a@x.example", {"email": "a@x.example"}, 3)
    with pytest.raises(AttributeError):
        r.email = "b@x.example"  # type: ignore[misc]


def test_summary_and_row_messages() -> None:
    result = ImportResult(
        [Recipient("a@x.example", {}, 1)] * 120,
        [Rejected(7, "bob@@x", "'bob@@x' is not a valid email address: bad")] * 3,
        [Duplicate(9, "a@x.example", 1)] * 2,
        ["email"],
        "email",
        "list.csv",
    )
    assert result.summary() == "120 valid, 3 invalid, 2 duplicates"
    result.duplicates = result.duplicates[:1]
    assert result.summary() == "120 valid, 3 invalid, 1 duplicate"
    assert str(Rejected(7, "x", "why")) == "line 7: why"
    assert str(Duplicate(9, "a@x.example", 1)) == "line 9: a@x.example is a duplicate of line 1"


# --- .txt -----------------------------------------------------------------------------------


def test_txt_one_address_a_line_skips_blank_and_comment_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "list.txt",
        "# customers\n\nann@example.com\n   \n  # indented comment\nbob@Example.COM\n",
    )
    result = load_file(path)
    assert emails(result) == ["ann@example.com", "bob@example.com"]
    assert lines(result) == {"ann@example.com": 3, "bob@example.com": 6}
    assert result.rejected == [] and result.duplicates == []
    assert result.source == str(path)
    assert result.fields == ["email", "name"]
    assert result.recipients[0].fields == {"name": "", "email": "ann@example.com"}


def test_txt_invalid_address_reported_with_line_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt", "a@example.com\n\n\n\n\n\nbob@@x\n")
    result = load_file(path)
    assert emails(result) == ["a@example.com"]
    [bad] = result.rejected
    assert bad.line == 7 and bad.value == "bob@@x"
    assert str(bad).startswith("line 7: 'bob@@x' is not a valid email address: ")
    assert "@" in bad.reason.split(": ", 1)[1]  # email-validator's own reason follows


def test_txt_with_name_addr_entries(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt", 'Ann Lee <ann@example.com>\n"Doe, John" <john@example.com>\n')
    result = load_file(path)
    assert [(r.email, r.fields["name"], r.line) for r in result.recipients] == [
        ("ann@example.com", "Ann Lee", 1),
        ("john@example.com", "Doe, John", 2),
    ]


def test_txt_that_is_really_a_tab_separated_table(tmp_path: Path) -> None:
    # Excel's "Text (Tab delimited) (*.txt)" export
    path = write(tmp_path, "export.txt", "Name\tEmail\nAnn, Jr.\tann@example.com\n")
    result = load_file(path)
    assert result.email_column == "Email"
    assert result.recipients[0].fields["Name"] == "Ann, Jr."


# --- CSV basics -----------------------------------------------------------------------------


def test_csv_with_header_fields_aliases_and_normalised_email(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "list.csv",
        "First Name,Last Name,E-mail,Company\nAnn,Lee, Ann@Example.COM ,ACME\n",
    )
    result = load_file(path)
    assert result.email_column == "E-mail"
    assert result.fields == [
        "First Name", "Last Name", "E-mail", "Company",
        "first_name", "last_name", "e_mail", "company", "email", "name",
    ]
    assert result.name_column == "First Name + Last Name"
    [r] = result.recipients
    assert r.email == "Ann@example.com"  # domain lowercased, local part kept
    assert r.line == 2
    assert r.fields == {
        "First Name": "Ann",
        "Last Name": "Lee",
        "E-mail": " Ann@Example.COM ",
        "Company": "ACME",
        "first_name": "Ann",
        "last_name": "Lee",
        "e_mail": " Ann@Example.COM ",
        "company": "ACME",
        "email": "Ann@example.com",
        "name": "Ann Lee",  # first and last name joined: the To display name
    }


def test_internationalised_domain_is_normalised_to_unicode() -> None:
    result = parse_text("email\nuser@BÜCHER.de\nuser@xn--bcher-kva.de\n")
    assert emails(result) == ["user@bücher.de"]
    assert result.duplicates == [Duplicate(3, "user@bücher.de", 2)]


def test_utf8_bom_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", "\ufeffemail,name\nann@example.com,Zoë\n")
    result = load_file(path)
    assert result.email_column == "email"
    assert result.recipients[0].fields["name"] == "Zoë"


def test_cp1252_file_with_accents_and_euro_sign(tmp_path: Path) -> None:
    path = write(tmp_path, "excel.csv", "Name,Email\nRené €,rene@example.com\n", "cp1252")
    result = load_file(path)
    assert result.recipients[0].fields["Name"] == "René €"
    assert result.encoding == "cp1252"
    assert result.warnings == [
        "read as Windows-1252 (not UTF-8); if accented letters look wrong, save the file as UTF-8"
    ]


def test_latin1_fallback_never_fails(tmp_path: Path) -> None:
    # 0x81 is undefined in cp1252 and invalid UTF-8: only latin-1 decodes it
    path = write(tmp_path, "odd.csv", b"Name,Email\nA\x81\xe9,a@example.com\n")
    result = load_file(path)
    assert result.recipients[0].fields["Name"] == "A\x81é"
    assert result.encoding == "latin-1"
    assert [w.split(";")[0] for w in result.warnings] == ["read as Latin-1 (not UTF-8)"]


def test_utf16_with_bom(tmp_path: Path) -> None:
    # Excel's "Unicode Text" export
    path = write(tmp_path, "unicode.txt", "Name\tEmail\nZoë\tzoe@example.com\n", "utf-16")
    result = load_file(path)
    assert result.recipients[0].fields["Name"] == "Zoë"
    assert (result.encoding, result.warnings) == ("utf-16", [])


def test_damaged_utf16_is_still_read_as_utf16(tmp_path: Path) -> None:
    # a lone surrogate (half of a character) on line 3
    data = "Name\tEmail\nZoë\tzoe@example.com\n".encode("utf-16") + "Ä\ud800nn\tann@example.com\n".encode(
        "utf-16-le", "surrogatepass"
    )
    result = load_file(write(tmp_path, "unicode.txt", data))
    assert result.encoding == "utf-16"
    assert [r.fields["Name"] for r in result.recipients] == ["Zoë", "Ä\ufffdnn"]
    [warning] = result.warnings
    assert warning.startswith("line 3: bytes that are not valid UTF-16 were replaced with \ufffd")


def test_utf8_file_has_no_warnings(tmp_path: Path) -> None:
    for text in ("email,name\nann@example.com,Ann\n", "\ufeffemail,name\nzoe@example.com,Zoë 😀\n"):
        result = load_file(write(tmp_path, "u.csv", text))
        assert (result.encoding, result.warnings) == ("utf-8", [])
    result = parse_text("email\nzoe@example.com\n")
    assert (result.encoding, result.warnings) == ("utf-8", [])


def test_a_few_bad_bytes_in_a_utf8_file_are_replaced_not_the_whole_file_recoded(
    tmp_path: Path,
) -> None:
    # Someone pasted one Windows-1252 name into a UTF-8 file: the other names must stay
    # right ("Ä", not "Ã„"), and the user is told which line to fix.
    data = (
        "email,name\r\n"  # 1
        "a@example.com,Äpfel\r\n"  # 2
        "b@example.com,Zoë\r\n"  # 3
    ).encode() + b"c@example.com,Ren\xe9\r\n" + "d@example.com,Jürgen\r\n".encode()  # 4, 5
    result = load_file(write(tmp_path, "mixed.csv", data))
    assert result.encoding == "utf-8"
    assert [r.fields["name"] for r in result.recipients] == ["Äpfel", "Zoë", "Ren\ufffd", "Jürgen"]
    assert result.warnings == [
        "line 4: bytes that are not UTF-8 were replaced with \ufffd; "
        "save the file as UTF-8 to keep those characters"
    ]
    assert result.summary() == "4 valid, 0 invalid, 0 duplicates"


def test_bad_bytes_on_several_lines_are_all_named(tmp_path: Path) -> None:
    rows = [f"u{i}@example.com,Zoë".encode() for i in range(30)]
    for i in (1, 2, 4):
        rows[i] = f"u{i}@example.com,".encode() + b"Ren\xe9"
    data = b"email,name\n" + b"\n".join(rows) + b"\n"
    [warning] = load_file(write(tmp_path, "m.csv", data)).warnings
    assert warning.startswith("lines 3, 4 and 6: ")
    rows = [f"u{i}@example.com,".encode() + (b"R\xe9" if i % 2 else "Zoë".encode()) for i in range(60)]
    data = b"email,name\n" + b"\n".join(rows) + b"\n"
    result = load_file(write(tmp_path, "m.csv", data))
    assert result.encoding == "utf-8"
    assert result.warnings[0].startswith("lines 3, 5, 7, 9, 11, 13, 15, 17, 19, 21 and 20 more: ")


def test_file_that_is_clearly_not_utf8_is_read_as_cp1252(tmp_path: Path) -> None:
    # many bad bytes and a single pair that happens to be valid UTF-8 ("Ã©")
    text = "email,name\n" + "".join(f"u{i}@example.com,Ren{'é' * 3}\n" for i in range(5))
    data = text.encode("cp1252") + "x@example.com,Ã©\n".encode("cp1252")
    result = load_file(write(tmp_path, "w.csv", data))
    assert result.encoding == "cp1252"
    assert result.recipients[0].fields["name"] == "Renééé"
    assert result.recipients[-1].fields["name"] == "Ã©"
    assert result.warnings[0].startswith("read as Windows-1252 (not UTF-8)")


def test_semicolon_csv_with_commas_in_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "semi.csv",
        "Name;Email;City\nLee, Ann;ann@example.com;Paris\nDoe, John;john@example.com;Köln\n",
    )
    result = load_file(path)
    assert emails(result) == ["ann@example.com", "john@example.com"]
    assert result.recipients[1].fields == {
        "Name": "Doe, John",
        "Email": "john@example.com",
        "City": "Köln",
        "name": "Doe, John",
        "city": "Köln",
        "email": "john@example.com",  # the normalised address, not the "Email" cell's alias
    }


def test_comma_csv_with_semicolons_in_names(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "name,email\nAnn; Bob,ann@example.com\nCy,cy@example.com\n")
    result = load_file(path)
    assert result.recipients[0].fields["name"] == "Ann; Bob"


def test_tab_separated_csv_is_sniffed(tmp_path: Path) -> None:
    path = write(tmp_path, "tabs.csv", "name\temail\nLee, Ann; Dr\tann@example.com\n")
    assert load_file(path).recipients[0].fields["name"] == "Lee, Ann; Dr"


def test_tsv_is_always_tab(tmp_path: Path) -> None:
    path = write(tmp_path, "list.tsv", "name\temail\nA,B;C\ta@example.com\nD;E,F\td@example.com\n")
    result = load_file(path)
    assert [r.fields["name"] for r in result.recipients] == ["A,B;C", "D;E,F"]


def test_quoted_fields_with_commas_quotes_and_newlines_keep_line_numbers(tmp_path: Path) -> None:
    text = (
        "name,email\n"  # 1
        '"Lee, Ann",ann@example.com\n'  # 2
        '"Two\nline ""quoted""\nname",two@example.com\n'  # 3-5
        "bad,not-an-address\n"  # 6
        "Cy,cy@example.com\n"  # 7
        '"x\r\ny",crlf@example.com\n'  # 8-9
        "Dee,dee@example.com\n"  # 10
    )
    result = load_file(write(tmp_path, "q.csv", text))
    assert lines(result) == {
        "ann@example.com": 2,
        "two@example.com": 3,
        "cy@example.com": 7,
        "crlf@example.com": 8,
        "dee@example.com": 10,
    }
    assert result.recipients[1].fields["name"] == 'Two\nline "quoted"\nname'
    assert [r.line for r in result.rejected] == [6]


def test_crlf_and_lone_cr_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path, "mac.csv", "email\r\na@example.com\rb@example.com\r\n\r\nbad\r")
    result = load_file(path)
    assert lines(result) == {"a@example.com": 2, "b@example.com": 3}
    assert [r.line for r in result.rejected] == [5]


def test_blank_rows_and_all_empty_rows_are_skipped_silently(tmp_path: Path) -> None:
    path = write(tmp_path, "b.csv", "name,email\n\n,\n  ,\t\nann,ann@example.com\n,,\n")
    result = load_file(path)
    assert lines(result) == {"ann@example.com": 5}
    assert result.rejected == []


def test_ragged_rows(tmp_path: Path) -> None:
    text = "name,email,city\nAnn,ann@example.com\nBob,bob@example.com,Rome,extra,more\n"
    result = load_file(write(tmp_path, "ragged.csv", text))
    ann, bob = result.recipients
    assert ann.fields == {
        "name": "Ann", "email": "ann@example.com", "city": "", "col4": "", "col5": "",
    }
    assert bob.fields["city"] == "Rome"
    assert (bob.fields["col4"], bob.fields["col5"]) == ("extra", "more")
    assert result.fields == ["name", "email", "city", "col4", "col5"]


def test_row_missing_the_email_cell_is_rejected(tmp_path: Path) -> None:
    result = load_file(write(tmp_path, "m.csv", "name,email,city\nAnn\nBob,,Rome\nCy,cy@example.com\n"))
    assert [(r.line, r.reason) for r in result.rejected] == [
        (2, "no email address in column 'email'"),
        (3, "no email address in column 'email'"),
    ]
    assert "Bob" in result.rejected[1].value  # the row is shown, so it can be found
    assert str(result.rejected[0]) == "line 2: no email address in column 'email'"


@pytest.mark.parametrize(
    "cell",
    ['"a@example.com\nb"', '"a@example.com\n"', '"a@exa\rmple.com"', "a@exa\x00mple.com",
     "a@exa\x1bmple.com", '"a@example.com\u2028"'],
)
def test_line_breaks_and_controls_in_the_email_cell_are_invalid(tmp_path: Path, cell: str) -> None:
    result = load_file(write(tmp_path, "c.csv", f"name,email\nAnn,{cell}\nBob,bob@example.com\n"))
    assert emails(result) == ["bob@example.com"]
    [bad] = result.rejected
    assert bad.line == 2
    assert "line break or a control character" in bad.reason


# --- header and column detection ------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["Email", "E-Mail", "e-mail address", "EMAIL_ADDRESS", "Mail", "Correo electrónico",
     "Courriel", "E-Mail-Adresse", " email "],
)
def test_header_names_for_the_email_column(tmp_path: Path, header: str) -> None:
    text = f"Name,Notes,{header}\nAnn,friend of a@b.example,ann@example.com\n"
    result = load_file(write(tmp_path, "h.csv", text))
    assert result.email_column == header.strip()
    assert emails(result) == ["ann@example.com"]


def test_header_only_file_has_no_recipients(tmp_path: Path) -> None:
    result = load_file(write(tmp_path, "h.csv", "name,email\n"))
    assert result.recipients == [] and result.email_column == "email"


def test_header_without_a_known_name_is_found_by_its_values(tmp_path: Path) -> None:
    text = "Who,Contact\nAnn,ann@example.com\nBob,bob@example.com\nCy,not valid\n"
    result = load_file(write(tmp_path, "h.csv", text))
    assert result.email_column == "Contact"
    assert emails(result) == ["ann@example.com", "bob@example.com"]
    assert [r.line for r in result.rejected] == [4]
    assert result.recipients[0].fields == {
        "Who": "Ann", "Contact": "ann@example.com", "who": "Ann", "contact": "ann@example.com",
        "email": "ann@example.com",
    }


def test_file_without_header_uses_col_names(tmp_path: Path) -> None:
    text = "Ann,ann@example.com,Paris\nBob,bob@example.com\n"
    result = load_file(write(tmp_path, "nh.csv", text))
    assert result.email_column == "col2"
    assert result.fields == ["col1", "col2", "col3", "email"]
    assert lines(result) == {"ann@example.com": 1, "bob@example.com": 2}
    assert result.recipients[1].fields == {
        "col1": "Bob", "col2": "bob@example.com", "col3": "", "email": "bob@example.com",
    }


def test_first_column_of_mostly_addresses_wins(tmp_path: Path) -> None:
    text = "Ann,ann@example.com,boss@example.com\nBob,bob@example.com,\nCy,x,boss2@example.com\n"
    result = load_file(write(tmp_path, "two.csv", text))
    assert result.email_column == "col2"


def test_empty_and_repeated_header_cells_become_col_names(tmp_path: Path) -> None:
    text = "email,,Name,Name, \na@example.com,x,A,B,C\n"
    result = load_file(write(tmp_path, "h.csv", text))
    assert result.fields == ["email", "col2", "Name", "col4", "col5", "name"]
    assert result.recipients[0].fields == {
        "email": "a@example.com", "col2": "x", "Name": "A", "col4": "B", "col5": "C", "name": "A",
    }


def test_aliases_for_headers_that_are_not_identifiers(tmp_path: Path) -> None:
    text = "Email Address,First  Name (given),1st line,Prénom,first_name2,Ünïcode Ñame\na@example.com,a,b,c,d,e\n"
    result = load_file(write(tmp_path, "h.csv", text))
    f = result.recipients[0].fields
    assert f["email_address"] == "a@example.com"
    assert f["first_name_given"] == "a"
    assert f["_1st_line"] == "b"
    assert f["Prénom"] == "c" and f["prénom"] == "c"  # capitalised: a lowercase alias too
    assert "first_name2" in f and "first_name2_" not in f  # lowercase identifier: no alias
    assert f["ünïcode_ñame"] == "e"


def test_alias_never_replaces_a_real_column(tmp_path: Path) -> None:
    text = "first name,first_name,email\nalias,real,a@example.com\n"
    f = load_file(write(tmp_path, "h.csv", text)).recipients[0].fields
    assert f["first_name"] == "real" and f["first name"] == "alias"


# --- choosing the email column ---------------------------------------------------------------


def test_email_column_by_header_name_case_insensitive(tmp_path: Path) -> None:
    text = "name,work,home\nAnn,ann@work.example,ann@home.example\n"
    path = write(tmp_path, "c.csv", text)
    assert emails(load_file(path, email_column="HOME")) == ["ann@home.example"]
    assert load_file(path, email_column="home").email_column == "home"
    assert load_file(path).email_column == "work"


def test_email_column_by_alias(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "Name,Private Mail\nAnn,ann@example.com\n")
    assert load_file(path, email_column="private_mail").email_column == "Private Mail"


def test_email_column_naming_an_unknown_header_makes_the_first_row_a_header(tmp_path: Path) -> None:
    # "contact@x" style header: first row has an '@', but the caller named it
    path = write(tmp_path, "c.csv", "Name,Reach me at\nAnn,ann@example.com\n")
    result = load_file(path, email_column="reach me at")
    assert result.email_column == "Reach me at" and lines(result) == {"ann@example.com": 2}


@pytest.mark.parametrize("choice", [3, "3", " 3 "])
def test_email_column_by_number_without_header(tmp_path: Path, choice: int | str) -> None:
    path = write(tmp_path, "c.csv", "Ann,ann@work.example,ann@home.example\n")
    result = load_file(path, email_column=choice)
    assert result.email_column == "col3"
    assert emails(result) == ["ann@home.example"]
    assert load_file(path, email_column="col2").email_column == "col2"


def test_email_column_by_number_with_header(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "name,work,home\nAnn,ann@work.example,ann@home.example\n")
    assert load_file(path, email_column=3).email_column == "home"


@pytest.mark.parametrize("choice", ["phone", 4, "0", "-1", "²", "9" * 5000])
def test_unknown_email_column_names_it_and_lists_the_columns(tmp_path: Path, choice: object) -> None:
    path = write(tmp_path, "c.csv", "name,work,home\nAnn,ann@work.example,ann@home.example\n")
    with pytest.raises(RecipientFileError) as info:
        load_file(path, email_column=choice)  # type: ignore[arg-type]
    message = str(info.value)
    assert str(path) in message
    assert f"there is no column {str(choice)!r}" in message
    assert "the columns are: 'name', 'work', 'home'" in message


def test_unknown_email_column_without_header_lists_col_names(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "Ann,ann@example.com\n")
    with pytest.raises(RecipientFileError, match="the columns are: 'col1', 'col2'"):
        load_file(path, email_column="email")


def test_no_email_column_found(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "name,city\nAnn,Rome\nBob,Oslo\n")
    with pytest.raises(RecipientFileError) as info:
        load_file(path)
    assert str(path) in str(info.value)
    assert "no column of email addresses" in str(info.value)
    assert info.value.category == "file_error"


# --- dedupe ------------------------------------------------------------------------------------


def test_duplicates_are_case_insensitive_and_point_at_the_first(tmp_path: Path) -> None:
    text = "email,name\nann@example.com,A1\nbob@example.com,B\nANN@EXAMPLE.COM,A2\nAnn@Example.com,A3\n"
    result = load_file(write(tmp_path, "d.csv", text))
    assert emails(result) == ["ann@example.com", "bob@example.com"]
    assert result.recipients[0].fields["name"] == "A1"  # the first one is kept
    assert result.duplicates == [
        Duplicate(4, "ANN@example.com", 2),
        Duplicate(5, "Ann@example.com", 2),
    ]
    assert result.summary() == "2 valid, 0 invalid, 2 duplicates"


def test_invalid_rows_do_not_count_as_first_occurrence() -> None:
    result = parse_text("bad@@example.com\nok@example.com\nOK@example.com")
    assert result.duplicates == [Duplicate(3, "OK@example.com", 2)]


# --- pasted text -------------------------------------------------------------------------------


def test_paste_addresses_split_by_newlines_commas_semicolons_whitespace() -> None:
    text = "a@example.com, b@example.com;c@example.com\n\nd@example.com  e@example.com\tf@example.com\r\ng@example.com"
    result = parse_text(text)
    assert result.source == "pasted text"
    assert [(r.email, r.line) for r in result.recipients] == [
        ("a@example.com", 1), ("b@example.com", 1), ("c@example.com", 1),
        ("d@example.com", 3), ("e@example.com", 3), ("f@example.com", 3),
        ("g@example.com", 4),
    ]


def test_paste_name_addr_form() -> None:
    text = 'Ann Lee <ann@example.com>, "Doe, John" <John@Example.com>; <bare@example.com>\nzed@example.com'
    result = parse_text(text)
    assert [(r.email, r.fields["name"]) for r in result.recipients] == [
        ("ann@example.com", "Ann Lee"),
        ("John@example.com", "Doe, John"),
        ("bare@example.com", ""),
        ("zed@example.com", ""),
    ]
    assert result.fields == ["email", "name"]
    assert result.email_column == "email"


def test_paste_invalid_entries_are_reported_per_line() -> None:
    result = parse_text('ann@example.com\nnope, Bob <bob@@example.com>\n"Unclosed <x@example.com')
    assert emails(result) == ["ann@example.com"]
    assert [(r.line, r.value) for r in result.rejected] == [
        (2, "nope"), (2, "Bob <bob@@example.com>"), (3, '"Unclosed'), (3, "<x@example.com"),
    ]
    assert "'bob@@example.com' is not a valid email address" in result.rejected[1].reason


def test_paste_csv_with_header() -> None:
    result = parse_text("First Name,Email\nAnn,ann@example.com\n")
    assert result.email_column == "Email"
    assert result.recipients[0].fields["first_name"] == "Ann"


def test_paste_headerless_table_and_spreadsheet_copy() -> None:
    result = parse_text("Ann,ann@example.com\nBob,bob@example.com")
    assert result.email_column == "col2" and result.recipients[1].fields["col1"] == "Bob"
    result = parse_text("Name\tMail\nLee, Ann\tann@example.com\n")
    assert result.recipients[0].fields["Name"] == "Lee, Ann"


def test_paste_with_email_column_is_read_as_a_table() -> None:
    result = parse_text("ann@work.example,ann@home.example", email_column=2)
    assert emails(result) == ["ann@home.example"]


@pytest.mark.parametrize("text", ["", "   \n\t\n", "\ufeff"])
def test_empty_paste(text: str) -> None:
    with pytest.raises(RecipientFileError, match="pasted text"):
        parse_text(text)


def test_paste_with_only_comments() -> None:
    with pytest.raises(RecipientFileError, match="no email addresses found"):
        parse_text("# nothing here\n#\n")


# --- whole-file problems ----------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(RecipientFileError, match="file not found") as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(RecipientFileError, match="folder") as info:
        load_file(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions, not root")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.csv", "email\na@example.com\n")
    path.chmod(0)
    try:
        with pytest.raises(RecipientFileError, match="permission denied") as info:
            load_file(path)
        assert str(path) in str(info.value)
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n\t", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n"])
@pytest.mark.parametrize("name", ["list.csv", "list.txt", "list.tsv"])
def test_empty_file(tmp_path: Path, name: str, content: bytes) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(RecipientFileError, match="empty") as info:
        load_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["list.csv", "list.txt", "list.tsv", "list"])
def test_binary_garbage_is_a_clear_error(tmp_path: Path, name: str) -> None:
    garbage = bytes(range(256)) * 40 + b"\x00\xff\xfe" * 100
    path = write(tmp_path, name, garbage)
    try:
        result = load_file(path)
    except RecipientFileError as exc:
        assert str(path) in str(exc)
    else:
        assert result.recipients == []


def test_nul_bytes_do_not_break_good_rows(tmp_path: Path) -> None:
    text = b"name,email\nA\x00nn,ann@example.com\n\x00\x00\x00\nBob,bob@exam\x00ple.com\nCy,cy@example.com\n"
    result = load_file(write(tmp_path, "nul.csv", text))
    assert lines(result) == {"ann@example.com": 2, "cy@example.com": 5}
    assert result.recipients[0].fields["name"] == "A\x00nn"
    assert sorted(r.line for r in result.rejected) == [3, 4]


def test_unterminated_quote_skips_that_line_and_keeps_the_rest(tmp_path: Path) -> None:
    text = (
        "name,email\n"
        "Ann,ann@example.com\n"
        '"Lee, Bob,bob@example.com\n'  # 3: the quote never closes
        "Cy,cy@example.com\n"
        "Dee,dee@example.com\n"
    )
    result = load_file(write(tmp_path, "u.csv", text))
    assert lines(result) == {"ann@example.com": 2, "cy@example.com": 4, "dee@example.com": 5}
    [bad] = result.rejected
    assert bad.line == 3 and "never closed" in bad.reason
    assert bad.value == '"Lee, Bob,bob@example.com'


def test_unterminated_quote_in_last_line(tmp_path: Path) -> None:
    result = load_file(write(tmp_path, "u.csv", 'email\na@example.com\n"b@example.com'))
    assert emails(result) == ["a@example.com"]
    assert [r.line for r in result.rejected] == [3]


def test_many_unterminated_quotes_stay_bounded(tmp_path: Path) -> None:
    text = "email\n" + "".join(f'"x{i}@example.com\n' for i in range(5000))
    result = load_file(write(tmp_path, "u.csv", text))
    # every line is in some rejected entry; none became a recipient by accident
    assert not result.recipients
    assert 1 <= len(result.rejected) <= 5000


# A stray opening quote: csv would read the following lines into that cell up to the next
# quote character. The rule is documented above _swallowed_row in backend/recipients.py.

BROKEN_QUOTE = (
    "email,company\n"  # 1
    'a@example.com,"Acme\n'  # 2: the quote is never meant to be closed
    "b@example.com,Beta\n"  # 3
    'c@example.com,"Cee\n'  # 4: ... and neither is this one
    "d@example.com,Dee\n"  # 5
)


def test_stray_quote_does_not_swallow_the_rows_after_it(tmp_path: Path) -> None:
    result = load_file(write(tmp_path, "q.csv", BROKEN_QUOTE))
    assert lines(result) == {"b@example.com": 3, "d@example.com": 5}
    assert result.recipients[0].fields["company"] == "Beta"
    assert [r.line for r in result.rejected] == [2, 4]
    opened, never = result.rejected
    assert opened.value == 'a@example.com,"Acme'
    assert str(opened).startswith('line 2: a quote (") opened on this line is not closed until line 4')
    assert "lines 3-4 were read as rows of their own" in opened.reason
    assert "never closed" in never.reason
    assert result.summary() == "2 valid, 2 invalid, 0 duplicates"
    assert result.warnings == []


@pytest.mark.parametrize(
    ("text", "want", "rejected"),
    [
        # the span ends on a well-formed line, but the row then has one cell too many
        (
            'email,company\na@x.example,"Acme\n"b@x.example",Beta\nc@x.example,Cee\n',
            {"b@x.example": 3, "c@x.example": 4},
            [2],
        ),
        # three columns: the span closes at the end of a cell, the row is a cell short
        (
            'email,company,city\na@x.example,"Acme,Paris\nb@x.example,Beta,Rome"\n'
            "c@x.example,Cee,Oslo\n",
            {"b@x.example": 3, "c@x.example": 4},
            [2],
        ),
        # name first: the swallowed address is on the line that opens the quote
        (
            'name,email\n"Ann,a@x.example\n"Bob,b@x.example\nCy,c@x.example\n',
            {"c@x.example": 4},
            [2, 3],
        ),
        (
            'name,email\n"Ann,a@x.example\n"Bob",b@x.example\n',
            {"b@x.example": 3},
            [2],
        ),
        # semicolons, and a span of one line
        (
            'name;email\nAnn;a@x.example\n"Bob;b@x.example\n"Cy";c@x.example\n',
            {"a@x.example": 2, "c@x.example": 4},
            [3],
        ),
    ],
)
def test_stray_quote_variants_lose_no_row(
    tmp_path: Path, text: str, want: dict[str, int], rejected: list[int]
) -> None:
    result = load_file(write(tmp_path, "q.csv", text))
    assert lines(result) == want
    assert [r.line for r in result.rejected] == rejected
    assert "not closed until line" in result.rejected[0].reason or "never closed" in (
        result.rejected[0].reason
    )


def test_stray_quote_recovered_rows_keep_their_own_cells(tmp_path: Path) -> None:
    text = 'name,email\n"Ann,a@x.example\n"Bob",b@x.example\n'
    [bob] = load_file(write(tmp_path, "q.csv", text)).recipients
    assert bob.fields["name"] == "Bob"  # not 'Ann,a@x.example\nBob"'


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('name,email\n"12 Main St\nSpringfield",ann@example.com\n', "12 Main St\nSpringfield"),
        ('email,name\nann@example.com,"call first\nthen mail"\n', "call first\nthen mail"),
        # a note naming an address on a line of its own, and a line with a comma
        (
            'email,name\nann@example.com,"ask Bob\nbob@example.com\nor Cy, maybe"\n',
            "ask Bob\nbob@example.com\nor Cy, maybe",
        ),
        ('name,email\n"Lee,\nAnn ""Jr"", MD",ann@example.com\n', 'Lee,\nAnn "Jr", MD'),
    ],
)
def test_multi_line_quoted_cells_still_work(tmp_path: Path, text: str, value: str) -> None:
    cy = "Cy,cy@example.com\n" if text.startswith("name") else "cy@example.com,Cy\n"
    result = load_file(write(tmp_path, "m.csv", text + cy))
    assert emails(result) == ["ann@example.com", "cy@example.com"]
    assert result.recipients[0].fields["name"] == value
    assert result.rejected == [] and result.warnings == []


def test_csv_writer_value_that_looks_like_a_row_reads_back_exactly_with_a_warning(
    tmp_path: Path,
) -> None:
    # A value may hold a line that looks just like a row; csv.writer's output is well-formed
    # and as wide as its header, so it is kept, but the user is told about it.
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerows(
        [["email", "name"], ["a@example.com", "Acme\nb@example.com,Beta"], ["c@example.com", "C"]]
    )
    result = load_file(write(tmp_path, "w.csv", buf.getvalue()))
    assert lines(result) == {"a@example.com": 2, "c@example.com": 4}
    assert result.recipients[0].fields["name"] == "Acme\nb@example.com,Beta"
    assert result.rejected == []
    [warning] = result.warnings
    assert warning.startswith("line 2: a quoted cell here runs on to line 3")
    assert "'b@example.com,Beta'" in warning and "closing quote" in warning


def test_well_formed_but_doubtful_quote_is_a_warning(tmp_path: Path) -> None:
    # The stray quote on line 2 happens to be closed by one at the end of line 4: the file is
    # valid CSV, so nothing is rejected, but lines 3-4 are not lost without a word.
    text = 'email,company\na@example.com,"Acme\nb@example.com,Beta\nc@example.com,Cee"\n'
    result = load_file(write(tmp_path, "q.csv", text))
    assert emails(result) == ["a@example.com"]
    assert [w.split(":")[0] for w in result.warnings] == ["line 2"]


def test_broken_quote_past_the_reread_limit_rejects_the_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("backend.recipients._MAX_REREAD", 0)
    result = load_file(write(tmp_path, "q.csv", BROKEN_QUOTE))
    assert lines(result) == {"d@example.com": 5}
    [bad] = result.rejected
    assert str(bad).endswith("lines 2-4 were not imported")


def test_huge_fields(tmp_path: Path) -> None:
    big = "x" * 3_000_000
    text = f"name,email\n{big},ann@example.com\nBob,{big}@example.com\n\"{big}\n{big}\",cy@example.com\nDee,dee@example.com\n"
    result = load_file(write(tmp_path, "big.csv", text))
    # a cell over MAX_FIELD (64 KB) rejects its row, naming the column; the line count
    # stays right past a multi-line one
    assert lines(result) == {"dee@example.com": 6}
    assert [r.line for r in result.rejected] == [2, 3, 4]
    assert all(len(r.value) <= 200 and len(r.reason) < 300 for r in result.rejected)
    assert [r.reason.split(" holds")[0] for r in result.rejected] == [
        "column 1 ('name')", "column 2 ('email')", "column 1 ('name')"
    ]


def test_no_rows_only_unreadable_content(tmp_path: Path) -> None:
    with pytest.raises(RecipientFileError):
        load_file(write(tmp_path, "c.csv", ",,,\n;;\n"))


def test_large_file_keeps_every_row_and_finds_the_late_duplicate(tmp_path: Path) -> None:
    # Speed is measured by benchmarks/bench_recipients.py, not asserted here.
    rows = 20_000
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["First Name", "Last Name", "Email", "Company"])
    for i in range(rows):
        writer.writerow([f"Name {i}", f"Last, {i}", f"user{i}@example{i % 50}.com", "ACME"])
    writer.writerow(["Dup", "", "USER7@example7.com", ""])
    path = write(tmp_path, "big.csv", buf.getvalue())
    result = load_file(path)
    assert result.summary() == f"{rows} valid, 0 invalid, 1 duplicate"
    assert result.duplicates == [Duplicate(rows + 2, "USER7@example7.com", 9)]
    assert result.recipients[-1].fields["last_name"] == f"Last, {rows - 1}"


# --- properties ----------------------------------------------------------------------------------

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text rich in what breaks parsers: delimiters, quotes, line breaks, @, NUL, BOM, non-ASCII.
tricky_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(',;\t"\'\r\n@.<>#\x00\ufeff \u2028é€')),
        st.characters(codec="utf-8"),
    ),
    max_size=300,
)


def _check_result(result: ImportResult, physical_lines: int) -> None:
    assert isinstance(result, ImportResult)
    for item in [*result.recipients, *result.rejected, *result.duplicates]:
        assert 1 <= item.line <= max(physical_lines, 1)
    for r in result.recipients:
        assert r.fields["email"] == r.email
        assert not re.search(r"[\x00-\x1f\x7f]", r.email)
    seen = {r.email.casefold() for r in result.recipients}
    assert len(seen) == len(result.recipients)


@FAST
@given(
    data=st.one_of(st.binary(max_size=400), tricky_text.map(lambda t: t.encode("utf-8"))),
    name=st.sampled_from(["list.csv", "list.tsv", "list.txt"]),
    column=st.one_of(st.none(), st.sampled_from(["email", "2", "col1", "x"])),
)
def test_any_file_gives_a_result_or_a_recipient_file_error(
    tmp_path: Path, data: bytes, name: str, column: str | None
) -> None:
    path = write(tmp_path, name, data)
    try:
        result = load_file(path, email_column=column)
    except RecipientFileError:
        return
    _check_result(result, len(re.findall(rb"\r\n|\r|\n", data)) + 1)


@FAST
@given(text=tricky_text)
def test_any_pasted_text_gives_a_result_or_a_recipient_file_error(text: str) -> None:
    try:
        result = parse_text(text)
    except RecipientFileError:
        return
    _check_result(result, len(re.findall(r"\r\n|\r|\n", text)) + 1)


addresses = st.builds(
    "{}.{}@{}.example".format,
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-+", min_size=1, max_size=12).filter(
        lambda s: s[0].isalnum()
    ),
    st.integers(0, 10**6),
    st.sampled_from(["mail", "Post-Office", "xn--bcher-kva", "a.b"]),
)
names = st.text(
    alphabet=st.one_of(st.sampled_from(list(',;"\'\r\n\t <>@')), st.characters(codec="utf-8")),
    max_size=40,
)


@FAST
@given(
    rows=st.lists(st.tuples(addresses, names), min_size=1, max_size=30, unique_by=lambda r: r[0]),
    email_first=st.booleans(),
    tsv=st.booleans(),
)
def test_csv_written_by_csv_writer_round_trips(
    tmp_path: Path, rows: list[tuple[str, str]], email_first: bool, tsv: bool
) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t" if tsv else ",")
    header = ["email", "name"] if email_first else ["name", "email"]
    writer.writerow(header)
    expected = []
    line = 2
    for address, name in rows:
        start = buf.tell()
        writer.writerow([address, name] if email_first else [name, address])
        expected.append((address, name, line))
        # a row spans one more physical line per line break inside its quoted cells
        line += len(re.findall(r"\r\n|\r|\n", buf.getvalue()[start:]))
    path = write(tmp_path, "list.tsv" if tsv else "list.csv", buf.getvalue())
    result = load_file(path)
    assert result.rejected == [] and result.duplicates == []
    got = [(r.fields["email"], r.fields["name"], r.line) for r in result.recipients]
    want = [
        (a.split("@")[0] + "@" + a.split("@")[1].lower().replace("xn--bcher-kva", "bücher"), n, ln)
        for a, n, ln in expected
    ]
    assert got == want


@FAST
@given(
    rows=st.lists(
        st.tuples(addresses, st.text(alphabet="abcdefghij ABC", min_size=1, max_size=8),
                  st.sampled_from(["ok", "ok", "open", "inner"])),
        min_size=1, max_size=30, unique_by=lambda r: r[0],
    ),
    email_first=st.booleans(),
)
def test_stray_quotes_never_lose_a_row_silently(
    tmp_path: Path, rows: list[tuple[str, str, str]], email_first: bool
) -> None:
    # "open": the name cell starts with a quote that is never meant to close, e.g. "Acme;
    # "inner": a quote inside the name (Ac"me), which is just a character.
    lines_out = ["email,name" if email_first else "name,email"]
    for address, name, kind in rows:
        cell = {"ok": name, "open": '"' + name, "inner": name[:1] + '"' + name[1:]}[kind]
        lines_out.append(f"{address},{cell}" if email_first else f"{cell},{address}")
    result = load_file(write(tmp_path, "q.csv", "\n".join(lines_out) + "\n"))
    assert result.duplicates == []
    # A stray quote at the end of a later cell can close the stray opening quote so that the
    # file is valid CSV, byte for byte what csv.writer writes for a multi-line name: then the
    # row stays, but the lines it runs over are named in a warning.
    spans = [
        (int(m[1]), int(m[2]))
        for w in result.warnings
        for m in [re.match(r"line (\d+): a quoted cell here runs on to line (\d+)", w)]
        if m
    ]
    assert len(spans) == len(result.warnings)
    placed = {r.line for r in [*result.recipients, *result.rejected]}
    for line in range(2, len(rows) + 2):
        assert line in placed or any(a < line <= b for a, b in spans)
    if spans:
        return
    # Otherwise: every row with a stray opening quote is rejected on its own line, every
    # other row is a recipient on its line with its own name.
    assert [r.line for r in result.rejected] == [
        i for i, (_, _, kind) in enumerate(rows, 2) if kind == "open"
    ]
    got = [(r.line, r.fields["name"]) for r in result.recipients]
    want = [
        (i, name[:1] + '"' + name[1:] if kind == "inner" else name)
        for i, (_, name, kind) in enumerate(rows, 2)
        if kind != "open"
    ]
    assert got == want


@FAST
@given(text=tricky_text)
def test_utf8_text_is_always_read_as_utf8_without_warnings(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    try:
        result = load_bytes(data, "list.csv")
    except RecipientFileError:
        return
    assert result.encoding == "utf-8"
    assert not [w for w in result.warnings if "UTF-8" in w]


def test_not_a_regular_file_or_a_bad_path(tmp_path: Path) -> None:
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.csv"
        os.mkfifo(fifo)
        with pytest.raises(RecipientFileError, match="not a regular file"):
            load_file(fifo)
    with pytest.raises(RecipientFileError, match="not a usable file path"):
        load_file("bad\x00name.csv")


def test_capitalised_headers_get_a_lowercase_alias() -> None:
    result = parse_text("Email,Code,First Name\na@example.com,C1,Ann\n")
    (r,) = result.recipients
    assert r.fields["code"] == "C1" and r.fields["Code"] == "C1" and r.fields["first_name"] == "Ann"
    assert r.fields["email"] == "a@example.com"  # the normalised address, not overridden


# --- Excel workbooks (.xlsx) -------------------------------------------------------------------


def xlsx(*sheets: tuple[str, list[list[object]]]) -> bytes:
    """A workbook with these sheets (title, rows), as openpyxl writes it."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def edit_member(data: bytes, member: str, edit: Callable[[str], str]) -> bytes:
    """The same ZIP with one member's text changed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename == member:
                content = edit(content.decode()).encode()
            dst.writestr(info.filename, content)
    return out.getvalue()


SHEET1 = "xl/worksheets/sheet1.xml"
PEOPLE = [
    ["Name", "Email", "Joined", "Score", "Share", "Member"],
    ["Ann", "ann@example.com", datetime.date(2024, 3, 1), 42, 2.5, True],
    ["Bob", "bob@example.com", datetime.datetime(2024, 3, 1, 14, 30), 7.0, 0.1 + 0.2, None],
    ["Cy", "cy@example.com", datetime.time(9, 15), 4915112345678.0, 1e20, False],
]


def test_xlsx_cells_become_text_like_csv_cells(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    path.write_bytes(xlsx(("People", PEOPLE)))
    result = load_file(path)
    assert (result.email_column, result.encoding, result.warnings) == ("Email", "xlsx", [])
    assert result.columns == ["Name", "Email", "Joined", "Score", "Share", "Member"]
    assert lines(result) == {"ann@example.com": 2, "bob@example.com": 3, "cy@example.com": 4}
    ann, bob, cy = result.recipients
    assert ann.fields == {
        "Name": "Ann", "Email": "ann@example.com", "Joined": "2024-03-01", "Score": "42",
        "Share": "2.5", "Member": "TRUE",
        "name": "Ann", "email": "ann@example.com", "joined": "2024-03-01", "score": "42",
        "share": "2.5", "member": "TRUE",
    }
    # whole numbers have no ".0", other numbers show as Excel shows them (15 digits at most)
    assert (bob.fields["Score"], bob.fields["Share"]) == ("7", "0.3")
    assert (cy.fields["Score"], cy.fields["Share"]) == ("4915112345678", "1e+20")
    # a date and time keeps its time; a time alone; an empty cell is ""
    assert (bob.fields["Joined"], bob.fields["Member"]) == ("2024-03-01 14:30:00", "")
    assert (cy.fields["Joined"], cy.fields["Member"]) == ("09:15:00", "FALSE")
    assert result.name_column == "Name"


def test_xlsx_rejected_and_duplicate_rows_carry_sheet_row_numbers() -> None:
    rows: list[list[object]] = [
        ["email", "company"],  # 1
        ["a@example.com", "Acme"],  # 2
        [None, None],  # 3: blank, skipped silently
        ["not an address", "Beta"],  # 4
        ["A@EXAMPLE.com", "Dup"],  # 5
        [None, "Cee"],  # 6: no address
        ["d@example.com", 12],  # 7
    ]
    result = load_bytes(xlsx(("S", rows)), "list.xlsx")
    assert lines(result) == {"a@example.com": 2, "d@example.com": 7}
    assert result.duplicates == [Duplicate(5, "A@example.com", 2)]
    assert [(r.line, r.value) for r in result.rejected] == [(4, "not an address"), (6, ", Cee")]
    assert result.rejected[1].reason == "no email address in column 'email'"
    assert result.summary() == "2 valid, 2 invalid, 1 duplicate"


def test_xlsx_without_header_finds_the_address_column_by_its_values() -> None:
    data = xlsx(("S", [["Ann", "ann@example.com"], [None, None], ["Bob", "bob@example.com"]]))
    result = load_bytes(data, "l.xlsx")
    assert result.email_column == "col2"
    assert lines(result) == {"ann@example.com": 1, "bob@example.com": 3}
    assert load_bytes(data, "l.xlsx", email_column=2).email_column == "col2"


def test_xlsx_trailing_empty_cells_add_no_columns() -> None:
    data = edit_member(
        xlsx(("S", [["email"], ["a@example.com"]])),
        SHEET1,
        # a formatted but empty cell far to the right, as Excel writes one
        lambda x: x.replace("</row></sheetData>", '<c r="Z2" s="0"/></row></sheetData>'),
    )
    result = load_bytes(data, "l.xlsx")
    assert result.columns == ["email"]
    assert emails(result) == ["a@example.com"]


def test_xlsx_formula_gives_its_cached_value_and_is_never_evaluated() -> None:
    data = xlsx(("S", [["email", "total", "label"], ["a@example.com", "=1+1", '="x"&"y"']]))
    # openpyxl writes formulas without a cached value (<v></v>): the cell reads as empty
    result = load_bytes(data, "f.xlsx")
    assert (result.recipients[0].fields["total"], result.recipients[0].fields["label"]) == ("", "")
    assert result.warnings == [] and result.rejected == []
    # what Excel saves: the formula and the value it calculated. The cached 5 (not 2) shows
    # that the value is read, not the formula evaluated.
    xml = zipfile.ZipFile(io.BytesIO(data)).read(SHEET1).decode()
    assert "<f>1+1</f><v></v>" in xml
    cached = edit_member(
        data,
        SHEET1,
        lambda x: x.replace("<f>1+1</f><v></v>", "<f>1+1</f><v>5</v>").replace(
            '<c r="C2"><f>"x"&amp;"y"</f><v></v>', '<c r="C2" t="str"><f>"x"&amp;"y"</f><v>cached</v>'
        ),
    )
    [r] = load_bytes(cached, "f.xlsx").recipients
    assert (r.fields["total"], r.fields["label"]) == ("5", "cached")


def test_xlsx_only_the_first_sheet_is_read_and_others_are_named() -> None:
    data = xlsx(
        ("Customers", [["email"], ["a@example.com"]]),
        ("Notes", [["b@example.com"]]),
        ("Empty", []),
        ("More", [[None, "x"]]),
    )
    result = load_bytes(data, "book.xlsx")
    assert emails(result) == ["a@example.com"]
    assert result.warnings == [
        "only the first sheet, 'Customers', was read; the other sheets ('Notes', 'More') were ignored"
    ]
    # Excel's default empty "Sheet2" is not worth a warning
    data = xlsx(("Customers", [["email"], ["a@example.com"]]), ("Sheet2", []))
    assert load_bytes(data, "book.xlsx").warnings == []
    data = xlsx(("Customers", [["email"], ["a@example.com"]]), ("Sheet2", [["note"]]))
    assert load_bytes(data, "book.xlsx").warnings == [
        "only the first sheet, 'Customers', was read; the other sheet ('Sheet2') was ignored"
    ]


def test_xlsx_with_an_empty_first_sheet() -> None:
    with pytest.raises(RecipientFileError, match="the first sheet, 'Blank', is empty"):
        load_bytes(xlsx(("Blank", []), ("Data", [["a@example.com"]])), "e.xlsx")


def test_zip_content_is_read_as_a_workbook_whatever_its_name() -> None:
    data = xlsx(("S", [["email"], ["a@example.com"]]))
    for name in ("export.xls", "upload", "list.csv", "list.XLSX", "list.xlsm"):
        assert emails(load_bytes(data, name)) == ["a@example.com"]


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "old.xls", "old Excel (.xls) workbook"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "renamed.csv", "old Excel (.xls)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "secret.xlsx", "password-protected"),
        (b"Name\tEmail\nAnn\ta@example.com\n", "web-export.xls", ".xls files cannot be read"),
        (b"PK\x03\x04 whatever", "sheet.ods", ".ods files cannot be read"),
        (b"PK\x03\x04 whatever", "book.xlsb", ".xlsb files cannot be read"),
    ],
)
def test_other_spreadsheet_formats_are_refused_with_what_to_do(
    data: bytes, name: str, message: str
) -> None:
    with pytest.raises(RecipientFileError, match=re.escape(message)) as info:
        load_bytes(data, name)
    assert "save it as .xlsx or .csv" in str(info.value)


def test_broken_and_non_workbook_files_named_xlsx(tmp_path: Path) -> None:
    good = xlsx(("S", [["email"], ["a@example.com"]]))
    plain_zip, document = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("readme.txt", "hello")
    with zipfile.ZipFile(document, "w") as z:  # an Office file, but not a workbook
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<document/>")
    cases = {
        "truncated.xlsx": (good[: len(good) // 2], "not a readable ZIP file"),
        "garbage.xlsx": (b"PK\x03\x04" + bytes(range(256)) * 4, "not a readable ZIP file"),
        "text.xlsx": (b"email\na@example.com\n", "not a readable ZIP file"),
        "archive.xlsx": (plain_zip.getvalue(), "is a ZIP archive but not an Excel workbook"),
        "badxml.xlsx": (edit_member(good, SHEET1, lambda x: x[: len(x) // 2]), "cannot be read as an Excel workbook"),
        "letter.xlsx": (document.getvalue(), "cannot be read as an Excel workbook"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(RecipientFileError, match=re.escape(message)):
            load_file(write(tmp_path, name, data))
    with pytest.raises(RecipientFileError, match="the file is empty"):
        load_file(write(tmp_path, "empty.xlsx", b""))


def test_encrypted_zip_member_is_refused() -> None:
    data = bytearray(xlsx(("S", [["email"], ["a@example.com"]])))
    # set the "encrypted" flag of the first member in the central directory
    at = data.index(b"PK\x01\x02")
    data[at + 8] |= 0x1
    with pytest.raises(RecipientFileError, match="password-protected"):
        load_bytes(bytes(data), "locked.xlsx")


def declare_size(data: bytes, member: str, size: int) -> bytes:
    """The same ZIP, its central directory claiming that member unpacks to size bytes."""
    out = bytearray(data)
    name = member.encode()
    at = out.index(b"PK\x01\x02")
    while out[at + 46 : at + 46 + len(name)] != name:
        at = out.index(b"PK\x01\x02", at + 4)
    out[at + 24 : at + 28] = size.to_bytes(4, "little")
    return bytes(out)


def test_zip_bomb_is_refused_by_its_declared_size_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the sheet claims to unpack to ~4 GB
    data = declare_size(xlsx(("S", [["email"], ["a@example.com"]])), SHEET1, 0xFFFF_FFF0)

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("openpyxl must not see a refused file")

    monkeypatch.setattr(openpyxl, "load_workbook", no_parsing)
    with pytest.raises(
        RecipientFileError, match=r"refused, the workbook would unpack to 4,096 MB \(at most 200 MB\)"
    ):
        load_bytes(data, "bomb.xlsx")
    monkeypatch.setattr("backend.recipients._XLSX_MAX_UNPACKED", 1000)
    with pytest.raises(RecipientFileError, match="would unpack to"):
        load_bytes(xlsx(("S", [["email"], ["a@example.com"]])), "big.xlsx")


def test_member_unpacking_to_more_than_it_declares_is_cut_off() -> None:
    # the declared sizes are what the limit checks, so they must bind: zipfile stops at the
    # declared size and the member then fails its CRC check
    data = declare_size(xlsx(("S", [["email"], ["a@example.com"]])), SHEET1, 100)
    with pytest.raises(RecipientFileError, match="cannot be read as an Excel workbook"):
        load_bytes(data, "liar.xlsx")


def test_xlsx_row_and_cell_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    rows: list[list[object]] = [["email", "n"], *([f"u{i}@example.com", i] for i in range(5))]
    data = xlsx(("S", rows))
    monkeypatch.setattr("backend.recipients.MAX_ROWS", 6)
    assert len(load_bytes(data, "l.xlsx").recipients) == 5
    monkeypatch.setattr("backend.recipients.MAX_ROWS", 5)
    with pytest.raises(RecipientFileError, match="more than 5 rows"):
        load_bytes(data, "l.xlsx")
    monkeypatch.setattr("backend.recipients.MAX_ROWS", 1000)
    monkeypatch.setattr("backend.recipients._XLSX_MAX_CELLS", 11)
    with pytest.raises(RecipientFileError, match="more than 11 cells"):
        load_bytes(data, "l.xlsx")
    # empty padding cells count: one cell far to the right makes a wide row
    monkeypatch.setattr("backend.recipients._XLSX_MAX_CELLS", 700)
    wide = edit_member(
        data, SHEET1, lambda x: x.replace("<v>0</v></c>", '<v>0</v></c><c r="ZZ2"><v>1</v></c>', 1)
    )
    with pytest.raises(RecipientFileError, match="more than 700 cells"):
        load_bytes(wide, "l.xlsx")
    monkeypatch.setattr("backend.recipients._XLSX_MAX_CELLS", 800)
    assert load_bytes(wide, "l.xlsx").columns[-1] == "col702"  # column ZZ


def test_xlsx_row_number_past_excels_last_row_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("backend.recipients._XLSX_SHEET_ROWS", 100)
    data = edit_member(
        xlsx(("S", [["email"], ["a@example.com"]])),
        SHEET1,
        lambda x: x.replace('<row r="2"><c r="A2"', '<row r="500"><c r="A500"'),
    )
    with pytest.raises(RecipientFileError, match="past Excel's last row"):
        load_bytes(data, "far.xlsx")
    monkeypatch.setattr("backend.recipients._XLSX_SHEET_ROWS", 1000)
    assert lines(load_bytes(data, "far.xlsx")) == {"a@example.com": 500}


_GOOD_XLSX = xlsx(("S", [["name", "email"], ["Ann", "ann@example.com"], ["Bob", "bob@example.com"]]))


@settings(max_examples=100, deadline=None)
@given(
    edits=st.lists(st.tuples(st.integers(0, len(_GOOD_XLSX) - 1), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, len(_GOOD_XLSX))),
)
def test_any_damaged_workbook_gives_a_result_or_a_recipient_file_error(
    edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(_GOOD_XLSX)
    for at, value in edits:
        data[at] = value
    try:
        result = load_bytes(bytes(data[:cut]), "damaged.xlsx")
    except RecipientFileError:
        return
    _check_result(result, 3)


# --- the name column ------------------------------------------------------------------------------


def test_name_column_chosen_by_header_alias_col_or_number() -> None:
    text = "Who,First Name,Contact\nAnn Lee,Ann,ann@example.com\n"
    for choice, used, want in [
        ("Who", "Who", "Ann Lee"),
        ("who", "Who", "Ann Lee"),
        ("first_name", "First Name", "Ann"),
        (2, "First Name", "Ann"),
        ("1", "Who", "Ann Lee"),
    ]:
        result = parse_text(text, name_column=choice)
        assert result.name_column == used
        assert result.recipients[0].fields["name"] == want
        assert result.fields[-1] == "name"
    result = parse_text("Ann,ann@example.com\n", name_column="col1")
    assert (result.name_column, result.recipients[0].fields["name"]) == ("col1", "Ann")


def test_unknown_name_column_is_an_error_listing_the_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "Who,Contact\nAnn,ann@example.com\n")
    with pytest.raises(RecipientFileError) as info:
        load_file(path, name_column="Nickname")
    assert str(info.value) == (
        f"{path}: there is no column 'Nickname' to take the names from; "
        "the columns are: 'Who', 'Contact'"
    )
    with pytest.raises(RecipientFileError, match="no column '3' to take the names from"):
        load_file(path, name_column=3)
    with pytest.raises(RecipientFileError, match="no column 'Who' to take the names from"):
        parse_text("ann@example.com, bob@example.com", name_column="Who")
    result = parse_text("Ann <ann@example.com>, bob@example.com", name_column="name")
    assert result.name_column == "name"
    assert [r.fields["name"] for r in result.recipients] == ["Ann", ""]


def test_explicit_name_column_overrides_the_detected_one() -> None:
    text = "Name,Nickname,Email\nAnn Lee,Annie,ann@example.com\n"
    assert parse_text(text).name_column == "Name"
    result = parse_text(text, name_column="Nickname")
    assert result.name_column == "Nickname"
    [r] = result.recipients
    assert (r.fields["name"], r.fields["Name"], r.fields["nickname"]) == ("Annie", "Ann Lee", "Annie")


@pytest.mark.parametrize(
    ("header", "used"),
    [
        ("Full Name,Email", "Full Name"),
        ("Display name,Email", "Display name"),
        ("E-mail,NAME", "NAME"),
        ("Full Name,name,Email", "name"),  # a column that is the "name" field already wins
    ],
)
def test_whole_name_columns_are_detected(header: str, used: str) -> None:
    cells = {"Email": "ann@example.com", "E-mail": "ann@example.com"}
    row = ",".join(cells.get(h, "Ann Lee") for h in header.split(","))
    result = parse_text(f"{header}\n{row}\n")
    assert result.name_column == used
    assert result.recipients[0].fields["name"] == "Ann Lee"


def test_first_and_last_name_columns_are_combined(tmp_path: Path) -> None:
    text = "email,Given Name,Surname\na@example.com,Ann,Lee\nb@example.com,Bob,\nc@example.com, , Cy \n"
    result = load_file(write(tmp_path, "l.csv", text))
    assert result.name_column == "Given Name + Surname"
    assert [r.fields["name"] for r in result.recipients] == ["Ann Lee", "Bob", "Cy"]
    assert result.fields[-1] == "name"
    # a first name alone is not a whole name; no name-like column: no "name" field at all
    for text in ("email,First Name\na@example.com,Ann\n", "email,Company\na@example.com,Acme\n"):
        result = parse_text(text)
        assert result.name_column is None
        assert "name" not in result.fields and "name" not in result.recipients[0].fields


def test_xlsx_name_columns() -> None:
    rows: list[list[object]] = [["First", "Last", "Mail"], ["Ann", "Lee", "ann@example.com"], [7, None, "x@example.com"]]
    result = load_bytes(xlsx(("S", rows)), "n.xlsx")
    assert result.name_column == "First + Last"
    assert [r.fields["name"] for r in result.recipients] == ["Ann Lee", "7"]
    result = load_bytes(xlsx(("S", rows)), "n.xlsx", name_column="Last")
    assert [r.fields["name"] for r in result.recipients] == ["Lee", ""]


# --- the quick address check (each domain validated once) ------------------------------

_QUICK_CASES = [
    "Bob.Smith@Example.ORG", "a@xn--bcher-kva.example", "a@b.co", "x@localhost.test", "a@b", "a..b@c.org",
    ".a@c.org", "a.@c.org", "a@-b.com", "a@b-.com", "a@b.com.", "a@1.2.3.4", "a@[127.0.0.1]",
    "a@" + "x" * 63 + ".com", "a@" + "x" * 64 + ".com", "l" * 64 + "@example.com", "l" * 65 + "@example.com",
    "a@" + ".".join(["abcdefghi"] * 25) + ".com", "a@" + ".".join(["abcdefghi"] * 24) + ".com",
    "o'brien+tag@mail.example.co.uk", "a@b.c", "a@example.invalid", "a@sub.onion", "a@b_c.com", "a@b.123",
    "user@EXAMPLE.com", "a{b}|c~@example.org", "a@exa mple.com", "a@@b.com", "a@b..com",
]


@pytest.mark.parametrize("address", _QUICK_CASES)
def test_the_quick_address_check_agrees_with_email_validator(address):
    from email_validator import validate_email

    from backend import recipients

    try:
        expected = validate_email(address, check_deliverability=False).normalized
    except ValueError:
        expected = None
    quick = recipients._plain_address(address)
    assert quick is None or quick == expected
    assert recipients._check_address(address, "x")[0] == (expected or "")


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9._%+'{}~-]{0,70}@[A-Za-z0-9._-]{0,70}", fullmatch=True))
def test_the_quick_address_check_agrees_on_any_ascii_address(address):
    from email_validator import validate_email

    from backend import recipients

    try:
        expected = validate_email(address, check_deliverability=False).normalized
    except ValueError:
        expected = None
    quick = recipients._plain_address(address)
    assert quick is None or quick == expected, (address, quick, expected)
