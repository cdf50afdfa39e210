"""Writes the bounce and reply corpus of tests/test_bounces.py: *.eml and expected.csv.

Every message is written for the tests, shaped like what Postfix, Exim, Exchange/Microsoft 365,
Gmail, Yahoo, iCloud, qmail and Sendmail send (and people and their out-of-office replies);
addresses are example.org / example.com / example.net, hosts invented. Each one points to its
own original message, <orig-NN.bm@example.com>, sent to rNN@example.org, so a test can rewrite
both to a real campaign's. Run it again after changing it:  python tests/bounces/make_corpus.py
"""

from __future__ import annotations

import csv
from pathlib import Path

HERE = Path(__file__).parent
ME = "Me <me@example.com>"
DATE = "Tue, 01 Dec 2026 10:{:02d}:00 +0000"
rows: list[tuple[str, str, str, str, str]] = []
files: dict[str, str] = {}
n = 0


def ids() -> tuple[int, str, str]:
    global n
    n += 1
    return n, f"<orig-{n:02d}.bm@example.com>", f"r{n:02d}@example.org"


def original(mid: str, rcpt: str, subject: str = "Hello") -> str:
    return (f"Return-Path: <me@example.com>\nReceived: from [127.0.0.1] by smtp.example.com\n"
            f"From: {ME}\nTo: {rcpt}\nSubject: {subject}\nDate: Tue, 01 Dec 2026 09:00:00 +0000\n"
            f"Message-ID: {mid}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n")


def save(name: str, text: str, kind: str, rcpt: str = "", status: str = "", mid: str = "") -> None:
    files[f"{name}.eml"] = text.lstrip("\n").replace("{r}", rcpt)
    rows.append((f"{name}.eml", kind, rcpt, status, mid))


def report(i: int, frm: str, subject: str, human: str, per_message: str, per_rcpt: str, attach: str,
           mid: str, rcpt: str, extra: str = "", html: str = "") -> str:
    """A multipart/report; report-type=delivery-status (RFC 3464)."""
    b = f"=_report_{i}"
    out = (f"Return-Path: <>\nFrom: {frm}\nTo: {ME}\nSubject: {subject}\nDate: {DATE.format(i % 60)}\n"
           f"Message-ID: <dsn-{i}@mx.example.net>\nAuto-Submitted: auto-replied\n{extra}MIME-Version: 1.0\n"
           f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"{b}\"\n\n"
           f"This is a MIME-encapsulated message.\n\n--{b}\nContent-Type: text/plain; charset=us-ascii\n\n{human}\n")
    if html:
        out += f"--{b}\nContent-Type: text/html; charset=us-ascii\n\n{html}\n"
    out += (f"--{b}\nContent-Type: message/delivery-status\n\n{per_message.strip()}\n\n{per_rcpt.strip()}\n\n")
    if attach == "rfc822":
        out += f"--{b}\nContent-Type: message/rfc822\n\n{original(mid, rcpt)}\nHello there.\n\n"
    elif attach == "headers":
        out += f"--{b}\nContent-Type: text/rfc822-headers\n\n{original(mid, rcpt)}\n"
    return out + f"--{b}--\n"


def rcpt_block(rcpt: str, action: str, status: str, diag: str, remote: str = "mx.example.org",
               original_rcpt: bool = True, extra: str = "") -> str:
    return (f"Final-Recipient: rfc822; {rcpt}\n" + (f"Original-Recipient: rfc822;{rcpt}\n" if original_rcpt else "")
            + f"Action: {action}\nStatus: {status}\nRemote-MTA: dns; {remote}\nDiagnostic-Code: smtp; {diag}\n{extra}")


def text_notice(i: int, frm: str, subject: str, body: str, extra: str = "") -> str:
    return (f"Return-Path: <>\nFrom: {frm}\nTo: {ME}\nSubject: {subject}\nDate: {DATE.format(i % 60)}\n"
            f"Message-ID: <notice-{i}@mx.example.net>\n{extra}MIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=us-ascii\n\n{body}")


# -- Postfix ---------------------------------------------------------------------------------------

POSTFIX_FROM = "MAILER-DAEMON@mx.example.net (Mail Delivery System)"


def postfix(name: str, action: str, status: str, diag: str, attach: str, kind: str,
            subject: str = "Undelivered Mail Returned to Sender", frm: str = POSTFIX_FROM,
            host: str = "mx.example.net", extra_rcpt: str = "") -> None:
    i, mid, rcpt = ids()
    human = (f"This is the mail system at host {host}.\n\nI'm sorry to have to inform you that your message "
             "could not\nbe delivered to one or more recipients. It's attached below.\n\n"
             "For further assistance, please send mail to postmaster.\n\n                   "
             f"The mail system\n\n<{rcpt}>: host mx.example.org[192.0.2.25] said: {diag} (in reply to RCPT TO command)\n")
    if action == "delayed":
        human = (f"This is the mail system at host {host}.\n\n####################################################"
                 "\n# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
                 "####################################################\n\nYour message could not be delivered for more "
                 "than 4 hour(s).\nIt will be retried until it is 5 day(s) old.\n\n"
                 f"<{rcpt}>: host mx.example.org[192.0.2.25] said: {diag}\n")
    per_message = (f"Reporting-MTA: dns; {host}\nX-Postfix-Queue-ID: 4Q{i:04d}ABCD\n"
                   "X-Postfix-Sender: rfc822; me@example.com\nArrival-Date: Tue,  1 Dec 2026 09:00:01 +0000 (UTC)")
    block = rcpt_block(rcpt, action, status, diag, extra=extra_rcpt)
    save(name, report(i, frm, subject, human, per_message, block, attach, mid, rcpt), kind, rcpt, status, mid)


postfix("postfix-user-unknown-headers", "failed", "5.1.1",
        "550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual mailbox table", "headers", "permanent")
postfix("postfix-user-unknown-rfc822", "failed", "5.1.1", "550 5.1.1 No such user", "rfc822", "permanent")
postfix("postfix-delayed", "delayed", "4.4.1", "450 4.4.1 Connection timed out", "headers", "delayed",
        subject="Delayed Mail (still being retried)",
        extra_rcpt="Will-Retry-Until: Sun, 6 Dec 2026 09:00:01 +0000 (UTC)\n")
postfix("postfix-expired-4xx", "failed", "4.4.7", "451 4.4.7 message expired: too long in the queue",
        "headers", "transient")
postfix("postfix-mailbox-full", "failed", "5.2.2", "552 5.2.2 Mailbox full: quota exceeded", "rfc822", "permanent")
postfix("postfix-forwarding-loop", "failed", "5.4.6", "554 5.4.6 mail forwarding loop for {r}", "rfc822",
        "permanent")

# -- iCloud (Postfix-based) -------------------------------------------------------------------------

ICLOUD = "Mail Delivery System <MAILER-DAEMON@icloud.com>"
postfix("icloud-user-unknown", "failed", "5.1.1", "550 5.1.1 <{r}>: user does not exist", "headers",
        "permanent", frm=ICLOUD, host="st43p00im-qukt09081701.me.com")
postfix("icloud-over-quota", "failed", "5.2.2", "552 5.2.2 <{r}>: user is over quota", "rfc822",
        "permanent", frm=ICLOUD, host="ms11p00im-qufo17281801.me.com")
postfix("icloud-delayed", "delayed", "4.7.0", "421 4.7.0 Temporary rate limit, try again later", "headers",
        "delayed", subject="Delayed Mail (still being retried)", frm=ICLOUD, host="st43p00im-qukt09081701.me.com")
postfix("icloud-gave-up-4xx", "failed", "4.4.2", "421 4.4.2 connection dropped", "rfc822", "transient",
        frm=ICLOUD, host="st43p00im-qukt09081701.me.com")

# -- Exim ------------------------------------------------------------------------------------------

EXIM = "Mail Delivery System <Mailer-Daemon@mail.example.net>"


def exim_report(name: str, action: str, status: str, diag: str, attach: str, kind: str, subject: str) -> None:
    i, mid, rcpt = ids()
    human = ("This message was created automatically by mail delivery software.\n\nA message that you sent could "
             "not be delivered to one or more of its\nrecipients. This is a permanent error. The following "
             f"address(es) failed:\n\n  {rcpt}\n    host mx.example.org [192.0.2.7]\n    SMTP error from remote "
             f"mail server after RCPT TO:<{rcpt}>:\n    {diag}\n")
    per_message = "Reporting-MTA: dns; mail.example.net"
    block = rcpt_block(rcpt, action, status, diag, original_rcpt=False)
    save(name, report(i, EXIM, subject, human, per_message, block, attach, mid, rcpt,
                      extra="X-Failed-Recipients: " + rcpt + "\n"), kind, rcpt, status, mid)


exim_report("exim-report-user-unknown", "failed", "5.1.1", "550 5.1.1 Unrouteable address", "rfc822", "permanent",
            "Mail delivery failed: returning message to sender")
exim_report("exim-report-delayed", "delayed", "4.0.0", "451 4.0.0 Temporary local problem", "headers", "delayed",
            "Warning: message 1tHyPq-0003Xy-2A delayed 24 hours")


def exim_text(name: str, status: str, line: str, kind: str, *, delayed: bool = False) -> None:
    i, mid, rcpt = ids()
    if delayed:
        body = ("This message was created automatically by mail delivery software.\nA message that you sent has "
                "not yet been delivered to one or more of its\nrecipients after more than 24 hours on the queue on "
                f"mail.example.net.\n\nThe message identifier is:     1tHyPq-000{i}Xy-2A\n"
                "The subject of the message is: Hello\n\nThe address to which the message has not yet been "
                f"delivered is:\n\n  {rcpt}\n    host mx.example.org [192.0.2.7]\n    {line}\n\n"
                "No action is required on your part. Delivery attempts will continue for\nsome time, and this "
                "warning may be repeated at intervals if the message\nremains undelivered. Eventually the mail "
                "delivery software will give up,\nand when that happens, the message will be returned to you.\n")
        subject = f"Warning: message 1tHyPq-000{i}Xy-2A delayed 24 hours"
    else:
        body = ("This message was created automatically by mail delivery software.\n\nA message that you sent "
                "could not be delivered to one or more of its\nrecipients. This is a permanent error. The "
                f"following address(es) failed:\n\n  {rcpt}\n    SMTP error from remote mail server after "
                f"RCPT TO:<{rcpt}>:\n    host mx.example.org [192.0.2.7]: {line}\n\n"
                "------ This is a copy of the message, including all the headers. ------\n\n"
                f"{original(mid, rcpt)}\nHello there.\n")
        subject = "Mail delivery failed: returning message to sender"
    save(name, text_notice(i, EXIM, subject, body, extra=f"X-Failed-Recipients: {rcpt}\n"), kind, rcpt, status,
         "" if delayed else mid)


exim_text("exim-text-user-unknown", "5.1.1", "550 5.1.1 <{r}>: Recipient address rejected: User unknown",
          "permanent")
exim_text("exim-text-spam-rejected", "5.7.1", "550 5.7.1 Message rejected as spam by content filter", "permanent")
exim_text("exim-text-delayed", "4.4.1", "Connection timed out (retry time not reached) 4.4.1", "delayed",
          delayed=True)

# -- Exchange / Microsoft 365 -------------------------------------------------------------------------

M365 = "Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@example.com>"
M365_POSTMASTER = "postmaster@example.onmicrosoft.com"


def m365(name: str, action: str, status: str, diag: str, attach: str, kind: str, subject: str = "Undeliverable: Hello",
         frm: str = M365) -> None:
    i, mid, rcpt = ids()
    if action == "delayed":
        human = ("Delivery is delayed to these recipients or groups:\n\n" + rcpt + "\n\nSubject: Hello\n\nThis "
                 "message hasn't been delivered yet. Delivery will continue to be attempted.\n\nThe server will "
                 "keep trying to deliver this message for the next 1 days, 19 hours and 53 minutes. You'll be "
                 "notified if the message can't be delivered by that time.\n")
    else:
        human = ("Your message to " + rcpt + " couldn't be delivered.\n" + rcpt.split("@")[0] + " wasn't found "
                 "at example.org.\n\nme  Office 365  " + rcpt.split("@")[0] + "\nAction Required  Recipient\n\n"
                 "Unknown To address\n\nHow to Fix It\nThe address may be misspelled or may not exist.\n")
    html = "<html><body><p>" + human.replace("\n", "<br>") + "</p></body></html>"
    per_message = ("Reporting-MTA: dns;AM6PR04MB1234.eurprd04.prod.outlook.com\n"
                   "Received-From-MTA: dns;AM6PR04MB5678.eurprd04.prod.outlook.com\n"
                   "Arrival-Date: Tue, 1 Dec 2026 09:00:02 +0000")
    block = (f"Final-Recipient: rfc822;{rcpt}\nAction: {action}\nStatus: {status}\n"
             f"Diagnostic-Code: smtp;{diag}\nX-Display-Name: {rcpt.split('@')[0]}\n")
    save(name, report(i, frm, subject, human, per_message, block, attach, mid, rcpt, html=html,
                      extra="X-MS-Exchange-Message-Is-Ndr:\nContent-Language: en-US\n"), kind, rcpt, status, mid)


m365("m365-recipient-not-found", "failed", "5.1.10",
     "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "rfc822", "permanent")
m365("m365-relay-denied", "failed", "5.4.1",
     "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", "headers", "permanent",
     frm=M365_POSTMASTER)
m365("m365-delayed", "delayed", "4.4.7", "400 4.4.7 Message delayed", "headers", "delayed",
     subject="Delivery delayed:Hello")
m365("m365-group-restricted", "failed", "5.7.133",
     "550 5.7.133 RESOLVER.RST.SenderNotAuthenticatedForGroup; authentication required", "rfc822", "permanent")
m365("exchange2010-user-unknown", "failed", "5.1.1",
     "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##", "headers", "permanent",
     frm="Microsoft Exchange <postmaster@corp.example.net>")


def exchange_old(name: str, attach: bool) -> None:
    """Exchange 2003: no delivery-status part, the reason in the text, the original attached."""
    i, mid, rcpt = ids()
    b = f"=_ex2003_{i}"
    body = ("Your message did not reach some or all of the intended recipients.\n\n      Subject:\tHello\n"
            "      Sent:\t12/1/2026 9:00 AM\n\nThe following recipient(s) cannot be reached:\n\n"
            f"      {rcpt} on 12/1/2026 9:00 AM\n            The e-mail account does not exist at the organization "
            "this message was sent to.  Check the e-mail address, or contact the recipient directly to find out "
            f"the correct address.\n            <exch.corp.example.net #5.1.1 smtp;550 5.1.1 User unknown>\n")
    head = (f"From: System Administrator <postmaster@corp.example.net>\nTo: {ME}\nSubject: Undeliverable: Hello\n"
            f"Date: {DATE.format(i)}\nMessage-ID: <ex2003-{i}@exch.corp.example.net>\nMIME-Version: 1.0\n"
            "X-MS-Embedded-Report:\n")
    text = (head + f"Content-Type: multipart/mixed; boundary=\"{b}\"\n\n--{b}\nContent-Type: text/plain; "
            f"charset=us-ascii\n\n{body}\n--{b}\nContent-Type: message/rfc822\n\n{original(mid, rcpt)}\n"
            f"Hello there.\n\n--{b}--\n")
    save(name, text, "permanent", rcpt, "5.1.1", mid)


def exchange_2000(name: str) -> None:
    """Exchange 5.5/2000: text only, the MTS-ID of the original instead of its Message-ID."""
    i, mid, rcpt = ids()
    body = ("Your message\n\n  To:      " + rcpt + "\n  Subject: Hello\n  Sent:    Tue, 1 Dec 2026 09:00:00 "
            "+0000\n\ndid not reach the following recipient(s):\n\n" + rcpt + " on Tue, 1 Dec 2026 09:00:05 "
            "+0000\n    The recipient name is not recognized\n\tThe MTS-ID of the original message is: "
            "c=US;a= ;p=Example;l=EXCH0126120109000001\n    MSEXCH:IMS:Example:Corp:EXCH 0 (000C05A6) Unknown "
            "Recipient\n")
    head = (f"From: System Administrator <postmaster@corp.example.net>\nTo: {ME}\nSubject: Undeliverable: Hello\n"
            f"Date: {DATE.format(i)}\nMessage-ID: <ex2000-{i}@exch.corp.example.net>\nMIME-Version: 1.0\n")
    save(name, head + "Content-Type: text/plain; charset=us-ascii\n\n" + body, "permanent", rcpt, "", "")


exchange_old("exchange2003-rfc822-attached", True)
exchange_2000("exchange2000-text-only")

# -- Gmail ----------------------------------------------------------------------------------------

GMAIL = "Mail Delivery Subsystem <mailer-daemon@googlemail.com>"


def gmail(name: str, action: str, status: str, diag: str, attach: str, kind: str, words: str) -> None:
    i, mid, rcpt = ids()
    subject = "Delivery Status Notification (Delay)" if action == "delayed" else \
        "Delivery Status Notification (Failure)"
    human = (f"** {words} **\n\nYour message to {rcpt} "
             + ("has been delayed. Mail Delivery Subsystem will retry for 46 more hours. You'll be notified if "
                "the delivery fails permanently." if action == "delayed" else
                "couldn't be delivered. The response from the remote server was:") + f"\n\n{diag}\n")
    html = f"<html><head></head><body><h2>{words}</h2><p>{diag}</p></body></html>"
    per_message = "Reporting-MTA: dns; googlemail.com\nArrival-Date: Tue, 01 Dec 2026 01:00:03 -0800 (PST)\n" \
                  "X-Original-Message-ID: " + mid
    block = rcpt_block(rcpt, action, status, diag.replace("\n", " "), remote="mx.example.org",
                       extra="Last-Attempt-Date: Tue, 01 Dec 2026 01:00:04 -0800 (PST)\n")
    save(name, report(i, GMAIL, subject, human, per_message, block, attach, mid, rcpt, html=html,
                      extra="X-Gm-Message-State: AOJu0Yw\n"), kind, rcpt, status, mid)


gmail("gmail-no-such-user", "failed", "5.1.1", "550-5.1.1 The email account that you tried to reach does not "
      "exist. Please try double-checking the recipient's email address for typos", "rfc822", "permanent",
      "Address not found")
gmail("gmail-account-disabled", "failed", "5.2.1", "550 5.2.1 The email account that you tried to reach is "
      "disabled.", "headers", "permanent", "Message not delivered")
gmail("gmail-delayed", "delayed", "4.4.1", "The recipient server did not accept our requests to connect. "
      "[mx.example.org. 192.0.2.9: timed out]", "rfc822", "delayed", "Message delayed")
gmail("gmail-unauthenticated", "failed", "5.7.26", "550-5.7.26 This mail is unauthenticated, which poses a "
      "security risk to the sender and Gmail users", "rfc822", "permanent", "Message blocked")
gmail("gmail-over-quota-gave-up", "failed", "4.2.2", "452-4.2.2 The email account that you tried to reach is "
      "over quota.", "headers", "transient", "Message not delivered")
gmail("gmail-inbox-full", "failed", "5.2.2", "552-5.2.2 The recipient's inbox is out of storage space",
      "headers", "permanent", "Message not delivered")

# -- Yahoo ------------------------------------------------------------------------------------------

YAHOO = "MAILER-DAEMON@yahoo.com"


def yahoo_text(name: str, status: str, said: str, kind: str) -> None:
    i, mid, rcpt = ids()
    body = ("Sorry, we were unable to deliver your message to the following address.\n\n"
            f"<{rcpt}>:\nRemote host said: {said} [RCPT_TO]\n\n--- Below this line is a copy of the message.\n\n"
            f"{original(mid, rcpt)}\nHello there.\n")
    save(name, text_notice(i, YAHOO, "Failure Notice", body), kind, rcpt, status, mid)


yahoo_text("yahoo-text-user-unknown", "5.1.1", "550 5.1.1 <{r}>... User unknown", "permanent")
yahoo_text("yahoo-text-mailbox-disabled", "5.2.1", "554 5.2.1 delivery error: dd This user doesn't have a "
           "example.org account ({r}) [0]", "permanent")
yahoo_text("yahoo-text-refused-spam", "5.7.1", "554 5.7.1 Message not accepted for policy reasons", "permanent")


def yahoo_report(name: str, action: str, status: str, diag: str, kind: str) -> None:
    i, mid, rcpt = ids()
    human = f"Sorry, we were unable to deliver your message to the following address.\n\n<{rcpt}>:\n{diag}\n"
    block = rcpt_block(rcpt, action, status, diag)
    save(name, report(i, "Mail Delivery Subsystem <MAILER-DAEMON@yahoo.com>", "Delivery Status Notification",
                      human, "Reporting-MTA: dns; sonic.mail.example.net", block, "rfc822", mid, rcpt),
         kind, rcpt, status, mid)


yahoo_report("yahoo-report-user-unknown", "failed", "5.0.0", "554 delivery error: dd Not a valid recipient",
             "permanent")
yahoo_report("yahoo-report-delayed", "delayed", "4.7.0", "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily "
             "deferred due to unexpected volume", "delayed")

# -- qmail ------------------------------------------------------------------------------------------


def qmail(name: str, status: str, line: str, kind: str, *, local: bool = False) -> None:
    i, mid, rcpt = ids()
    reason = (f"{line}\n" if local else
              f"192.0.2.44 does not like recipient.\nRemote host said: {line}\nGiving up on 192.0.2.44.\n")
    body = ("Hi. This is the qmail-send program at mail.example.net.\nI'm afraid I wasn't able to deliver your "
            "message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't "
            f"work out.\n\n<{rcpt}>:\n{reason}\n--- Below this line is a copy of the message.\n\n"
            f"{original(mid, rcpt)}\nHello there.\n")
    save(name, text_notice(i, "MAILER-DAEMON@mail.example.net", "failure notice", body), kind, rcpt, status, mid)


qmail("qmail-remote-user-unknown", "5.1.1", "550 5.1.1 <{r}>: Recipient address rejected: User unknown",
      "permanent")
qmail("qmail-local-no-mailbox", "5.1.1", "Sorry, no mailbox here by that name. (#5.1.1)", "permanent", local=True)
qmail("qmail-over-quota", "5.2.2", "552 5.2.2 mailbox over quota", "permanent")
qmail("qmail-mailbox-disabled", "5.2.1", "The users mailfolder is disabled. (#5.2.1)", "permanent", local=True)

# -- Sendmail ---------------------------------------------------------------------------------------

SENDMAIL = "Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>"


def sendmail_report(name: str, action: str, status: str, diag: str, attach: str, kind: str) -> None:
    i, mid, rcpt = ids()
    if action == "delayed":
        subject = "Warning: could not send message for past 4 hours"
        human = ("    **********************************************\n    **      THIS IS A WARNING MESSAGE ONLY"
                 "      **\n    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n"
                 "    **********************************************\n\nThe original message was received at Tue, "
                 "1 Dec 2026 09:00:01 GMT\nfrom localhost [127.0.0.1]\n\n   ----- Transcript of session follows "
                 f"-----\n<{rcpt}>... Deferred: Connection timed out with mx.example.org.\nWarning: message still "
                 "undelivered after 4 hours\nWill keep trying until message is 5 days old\n")
    else:
        subject = "Returned mail: see transcript for details"
        human = ("The original message was received at Tue, 1 Dec 2026 09:00:01 GMT\nfrom localhost [127.0.0.1]"
                 f"\n\n   ----- The following addresses had permanent fatal errors -----\n<{rcpt}>\n    "
                 f"(reason: {diag})\n\n   ----- Transcript of session follows -----\n... while talking to "
                 f"mx.example.org.:\n>>> RCPT To:<{rcpt}>\n<<< {diag}\n")
    per_message = ("Reporting-MTA: dns; relay.example.net\nReceived-From-MTA: DNS; localhost\n"
                   "Arrival-Date: Tue, 1 Dec 2026 09:00:01 GMT")
    block = rcpt_block(rcpt, action, status, diag, extra="Last-Attempt-Date: Tue, 1 Dec 2026 13:00:01 GMT\n")
    save(name, report(i, SENDMAIL, subject, human, per_message, block, attach, mid, rcpt), kind, rcpt, status, mid)


sendmail_report("sendmail-user-unknown-rfc822", "failed", "5.1.1", "550 5.1.1 <{r}>... User unknown", "rfc822",
                "permanent")
sendmail_report("sendmail-host-unknown-headers", "failed", "5.1.2", "550 5.1.2 Host unknown (Name server: "
                "example.org: host not found)", "headers", "permanent")
sendmail_report("sendmail-warning-delayed", "delayed", "4.4.1", "450 4.4.1 Connection timed out", "headers",
                "delayed")


def sendmail_text(name: str, status: str, said: str) -> None:
    """An old Sendmail notice: no MIME, the transcript and the original message in the text."""
    i, mid, rcpt = ids()
    body = ("The original message was received at Tue, 1 Dec 2026 09:00:01 GMT\nfrom localhost [127.0.0.1]\n\n"
            f"   ----- The following addresses had permanent fatal errors -----\n<{rcpt}>\n\n"
            f"   ----- Transcript of session follows -----\n... while talking to mx.example.org.:\n>>> RCPT "
            f"To:<{rcpt}>\n<<< {said}\n550 {rcpt}... User unknown\n\n   ----- Unsent message follows -----\n"
            f"{original(mid, rcpt)}\nHello there.\n")
    save(name, text_notice(i, SENDMAIL, "Returned mail: User unknown", body), "permanent", rcpt, status, mid)


sendmail_text("sendmail-text-user-unknown", "5.1.1", "550 5.1.1 <{r}>... User unknown")
sendmail_text("sendmail-text-no-such-mailbox", "5.1.1", "550 5.1.1 No such mailbox here")

# -- a success report and other messages that are no bounce -------------------------------------------

i, mid, rcpt = ids()
save("dsn-delivered-success", report(i, POSTFIX_FROM, "Successful Mail Delivery Report", "Your message was "
     "successfully delivered to the destination(s) listed below.\n", "Reporting-MTA: dns; mx.example.net",
     rcpt_block(rcpt, "relayed", "2.0.0", "250 2.0.0 Ok: queued"), "headers", mid, rcpt), "unrelated")

# -- people: replies, threaded or not ------------------------------------------------------------------


def person(name: str, kind: str, subject: str, body: str, *, threaded: str = "both", headers: str = "",
           ctype: str = "text/plain; charset=utf-8", cte: str = "", sender: str | None = None,
           expect_id: bool = True) -> None:
    i, mid, rcpt = ids()
    thread = ""
    if threaded in ("both", "in-reply-to"):
        thread += f"In-Reply-To: {mid}\n"
    if threaded in ("both", "references"):
        thread += f"References: <older-{i}@example.com> {mid}\n"
    text = (f"Return-Path: <{sender or rcpt}>\nFrom: {rcpt.split('@')[0].title()} <{sender or rcpt}>\nTo: {ME}\n"
            f"Subject: {subject}\nDate: Wed, 02 Dec 2026 08:{i % 60:02d}:00 +0100\n"
            f"Message-ID: <answer-{i}@example.org>\n{thread}{headers}MIME-Version: 1.0\nContent-Type: {ctype}\n"
            + (f"Content-Transfer-Encoding: {cte}\n" if cte else "") + f"\n{body}")
    save(name, text, kind, rcpt, "", mid if threaded != "none" and expect_id else "")


QUOTE = "\nOn Tue, 1 Dec 2026 at 10:00, Me <me@example.com> wrote:\n> Hello there.\n"
person("reply-threaded-en", "reply", "Re: Hello", "Thanks, that works for me. See you on Friday!\n" + QUOTE)
person("reply-references-only", "reply", "Re: Hello", "Count me in.\n" + QUOTE, threaded="references")
person("reply-threaded-de", "reply", "AW: Hallo", "Vielen Dank für die Nachricht, ich melde mich morgen.\n\n"
       "Am Di., 1. Dez. 2026 um 10:00 schrieb Me <me@example.com>:\n> Hello there.\n", threaded="in-reply-to")
person("reply-threaded-fr", "reply", "RE: Bonjour", "Merci beaucoup, c'est noté.\n\nLe mar. 1 déc. 2026 à 10:00, "
       "Me <me@example.com> a écrit :\n> Hello there.\n")
person("reply-unthreaded-re", "reply", "Re: Hello", "Hi, got your note, sounds good.\n", threaded="none")
person("reply-html-only", "reply", "Re: Hello", "<html><body><p>Yes, <b>please</b> send me the details.</p>"
       "<blockquote>Hello there.</blockquote></body></html>\n", ctype="text/html; charset=utf-8")
person("reply-es-quoted-printable", "reply", "RE: Hola",
       "Muchas gracias por la informaci=C3=B3n, lo revisar=C3=A9 ma=C3=B1ana.\n\nEl mar, 1 dic 2026 a las 10:00, "
       "Me escribi=C3=B3:\n> Hello there.\n", cte="quoted-printable")
person("reply-auto-submitted-no", "reply", "Re: Hello", "I'll call you later today.\n",
       headers="Auto-Submitted: no\n")
person("unrelated-new-message", "unrelated", "Lunch next week?", "Are you free for lunch next week?\n",
       threaded="none")
person("unrelated-newsletter", "unrelated", "Our December news", "News of the month.\n", threaded="none",
       headers="List-Id: <news.example.net>\nList-Unsubscribe: <mailto:leave@example.net>\n",
       sender="news@example.net")

# -- out of office and other automatic replies -------------------------------------------------------

person("ooo-en-auto-submitted", "auto_reply", "Out of Office: Hello", "I am out of the office until 7 December "
       "with limited access to email.\n", headers="Auto-Submitted: auto-replied\n")
person("ooo-exchange-automatic-reply", "auto_reply", "Automatic reply: Hello", "I'm away until Monday.\n",
       headers="Auto-Submitted: auto-generated\nX-MS-Exchange-Inbox-Rules-Loop: r@example.org\n"
       "X-Auto-Response-Suppress: All\n", threaded="in-reply-to")
person("ooo-de-x-autoreply", "auto_reply", "Abwesenheitsnotiz: Hallo", "Ich bin bis zum 7. Dezember nicht im "
       "Büro.\n", headers="X-Autoreply: yes\n")
person("ooo-de-subject-only", "auto_reply", "Automatische Antwort: Hallo", "Ich bin derzeit abwesend.\n",
       threaded="none")
person("ooo-fr-encoded-subject", "auto_reply", "=?UTF-8?Q?R=C3=A9ponse_automatique_:_Bonjour?=",
       "Je suis absent jusqu'au 7 décembre.\n", headers="Auto-Submitted: auto-replied\n")
person("ooo-fr-subject-only", "auto_reply", "Absent du bureau", "Je suis en congés.\n", threaded="none")
person("ooo-es-precedence-bulk", "auto_reply", "=?UTF-8?Q?Respuesta_autom=C3=A1tica:_Hola?=",
       "Estoy de vacaciones.\n", headers="Precedence: bulk\n")
person("ooo-es-x-autorespond", "auto_reply", "Fuera de la oficina", "Vuelvo el lunes.\n",
       headers="X-Autorespond: yes\n", threaded="references")
person("ooo-it-risposta", "auto_reply", "Risposta automatica: Ciao", "Sono fuori ufficio.\n",
       headers="Auto-Submitted: auto-replied\n")
person("ooo-nl-automatisch", "auto_reply", "Automatisch antwoord: Hallo", "Ik ben afwezig tot maandag.\n",
       threaded="none")
person("ooo-gmail-vacation-re", "auto_reply", "Re: Hello", "I'm on vacation and will reply when I'm back.\n",
       headers="Auto-Submitted: auto-replied\nPrecedence: bulk\n")
person("ooo-pt-resposta", "auto_reply", "=?UTF-8?Q?Resposta_autom=C3=A1tica:_Ol=C3=A1?=", "Estou ausente.\n",
       headers="Auto-Submitted: auto-replied\n")


if __name__ == "__main__":
    for old in HERE.glob("*.eml"):
        old.unlink()
    for name, text in files.items():
        (HERE / name).write_text(text, encoding="utf-8")
    with open(HERE / "expected.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "kind", "recipient", "status", "message_id"])
        w.writerows(sorted(rows))
    print(f"{len(rows)} messages written to {HERE}")
