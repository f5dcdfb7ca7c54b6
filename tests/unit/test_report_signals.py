"""Receivers' replies, as their pages publish them and as Postfix logs them, read as signals."""

from __future__ import annotations

import pytest

from reputable.report.signals import (
    Receiver,
    SignalClass,
    classify,
    normalized,
    receiver_of,
    status_code,
)

G, M, Y, ANY = Receiver.GOOGLE, Receiver.MICROSOFT, Receiver.YAHOO, Receiver.OTHER

# (relay host, reply as Postfix logs it, receiver, code, class)
REPLIES = [
    (
        "gmail-smtp-in.l.google.com[142.250.27.26]:25",
        "host gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.7.25 [192.0.2.25] The IP "
        "address sending this message does not have a 550-5.7.25 PTR record setup, or the "
        "corresponding forward DNS entry does not 550-5.7.25 point to the sending IP. As a "
        "policy, Gmail does not accept messages 550-5.7.25 from IPs with missing PTR records. "
        "550 5.7.25 a1si2 - gsmtp (in reply to end of DATA command)",
        G,
        "5.7.25",
        SignalClass.PTR,
    ),
    (
        "gmail-smtp-in.l.google.com[142.250.27.26]:25",
        "host gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.7.26 Unauthenticated email "
        "from example.com is not accepted due to domain's 550-5.7.26 DMARC policy. Please contact "
        "the administrator of example.com domain. 550 5.7.26 b2si3 - gsmtp (in reply to end of "
        "DATA command)",
        G,
        "5.7.26",
        SignalClass.DMARC,
    ),
    (
        "gmail-smtp-in.l.google.com[142.250.27.26]:25",
        "host gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.7.26 This message fails to "
        "pass SPF checks for an SPF record with a hard fail 550-5.7.26 policy (-all). 550 5.7.26 "
        "c3si4 - gsmtp (in reply to end of DATA command)",
        G,
        "5.7.26",
        SignalClass.SPF,
    ),
    (
        "gmail-smtp-in.l.google.com[142.250.27.26]:25",
        "host gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.7.26 This mail has been "
        "blocked because the sender is unauthenticated. 550-5.7.26 Gmail requires all senders "
        "to authenticate with either SPF or DKIM. 550 5.7.26 d4si5 - gsmtp (in reply to end of "
        "DATA command)",
        G,
        "5.7.26",
        SignalClass.AUTH,
    ),
    (
        "gmail-smtp-in.l.google.com[142.250.27.26]:25",
        "host gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.7.27 This mail has been "
        "blocked because the sender is unauthenticated. 550 5.7.27 e5si6 - gsmtp",
        G,
        "5.7.27",
        SignalClass.SPF,
    ),
    (
        "alt1.gmail-smtp-in.l.google.com[142.250.27.27]:25",
        "host alt1.gmail-smtp-in.l.google.com[142.250.27.27] said: 421-4.7.28 [192.0.2.25 15] "
        "Our system has detected an unusual rate of 421-4.7.28 unsolicited mail originating "
        "from your IP address. 421 4.7.28 f6si7 - gsmtp (in reply to end of DATA command)",
        G,
        "4.7.28",
        SignalClass.RATE,
    ),
    (
        "gmail-smtp-in.l.google.com[142.250.27.26]:25",
        "host gmail-smtp-in.l.google.com[142.250.27.26] said: 421-4.7.0 [192.0.2.25 15] Our "
        "system has detected an unusual rate of 421-4.7.0 unsolicited mail originating from "
        "your IP address. To protect our 421-4.7.0 users from spam, mail sent from your IP "
        "address has been temporarily 421-4.7.0 rate limited. 421 4.7.0 p4si3 - gsmtp",
        G,
        "4.7.0",
        SignalClass.REPUTATION,
    ),
    (
        "gmail-smtp-in.l.google.com[142.250.27.26]:25",
        "host gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.7.1 [192.0.2.25] Our system "
        "has detected that this message is 550-5.7.1 likely unsolicited mail. 550 5.7.1 g7si8 - "
        "gsmtp (in reply to end of DATA command)",
        G,
        "5.7.1",
        SignalClass.CONTENT,
    ),
    (
        "hotmail-com.olc.protection.outlook.com[104.47.12.33]:25",
        "host hotmail-com.olc.protection.outlook.com[104.47.12.33] said: 550 5.7.1 "
        "Unfortunately, messages from [192.0.2.25] weren't sent. Please contact your Internet "
        "service provider since part of their network is on our block list (S3140). You can "
        "also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. "
        "[DB3EUR04FT003.eop-eur04.prod.protection.outlook.com] (in reply to MAIL FROM command)",
        M,
        "S3140",
        SignalClass.REPUTATION,
    ),
    (
        "outlook-com.olc.protection.outlook.com[52.101.68.1]:25",
        "host outlook-com.olc.protection.outlook.com[52.101.68.1] said: 550 5.7.1 "
        "Unfortunately, messages from [192.0.2.25] weren't sent. Please contact your Internet "
        "service provider since part of their network is on our block list (S3150). "
        "(in reply to MAIL FROM command)",
        M,
        "S3150",
        SignalClass.REPUTATION,
    ),
    (
        "example-org.mail.protection.outlook.com[104.47.8.36]:25",
        "host example-org.mail.protection.outlook.com[104.47.8.36] said: 550 5.7.606 Access "
        "denied, banned sending IP [192.0.2.25]. To request removal from this list please "
        "visit https://sender.office.com/ and follow the directions. (in reply to RCPT TO "
        "command)",
        M,
        "5.7.606",
        SignalClass.REPUTATION,
    ),
    (
        "hotmail-com.olc.protection.outlook.com[104.47.0.33]:25",
        "host hotmail-com.olc.protection.outlook.com[104.47.0.33] said: 451 4.7.650 The mail "
        "server [192.0.2.25] has been temporarily rate limited due to IP reputation. For e-mail "
        "delivery information, see https://postmaster.live.com (S843) (in reply to RCPT TO "
        "command)",
        M,
        "4.7.650",
        SignalClass.RATE,
    ),
    (
        "mta7.am0.yahoodns.net[67.195.204.72]:25",
        "host mta7.am0.yahoodns.net[67.195.204.72] said: 421 4.7.0 [TSS04] Messages from "
        "192.0.2.25 temporarily deferred due to unexpected volume or user complaints - "
        "4.16.55.1; see https://postmaster.yahooinc.com/error-codes (in reply to MAIL FROM "
        "command)",
        Y,
        "TSS04",
        SignalClass.RATE,
    ),
    (
        "mta5.am0.yahoodns.net[67.195.204.74]:25",
        "host mta5.am0.yahoodns.net[67.195.204.74] said: 554 5.7.9 [TSS09] All messages from "
        "192.0.2.25 will be permanently deferred; Retrying will NOT succeed. See "
        "https://postmaster.yahooinc.com/error-codes (in reply to MAIL FROM command)",
        Y,
        "TSS09",
        SignalClass.REPUTATION,
    ),
    (
        "mta6.am0.yahoodns.net[67.195.204.77]:25",
        "host mta6.am0.yahoodns.net[67.195.204.77] refused to talk to me: 421 4.7.1 [TS03] All "
        "messages from 192.0.2.25 permanently deferred; Retrying will NOT succeed.",
        Y,
        "TS03",
        SignalClass.REPUTATION,
    ),
    (
        "mx.example.net[198.51.100.7]:25",
        "host mx.example.net[198.51.100.7] said: 554 5.7.1 Service unavailable; Client host "
        "[192.0.2.25] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/"
        "192.0.2.25 (in reply to RCPT TO command)",
        ANY,
        "5.7.1",
        SignalClass.DNSBL,
    ),
    (
        "mx.example.net[198.51.100.7]:25",
        "host mx.example.net[198.51.100.7] said: 550 5.7.1 Service unavailable; Client host "
        "[192.0.2.25] blocked using bl.spamcop.net (in reply to RCPT TO command)",
        ANY,
        "5.7.1",
        SignalClass.DNSBL,
    ),
    (
        "mx.example.net[198.51.100.7]:25",
        "host mx.example.net[198.51.100.7] said: 450 4.7.25 Client host rejected: cannot find "
        "your reverse hostname, [192.0.2.25] (in reply to RCPT TO command)",
        ANY,
        "4.7.25",
        SignalClass.PTR,
    ),
    (
        "mx.example.net[198.51.100.7]:25",
        "host mx.example.net[198.51.100.7] said: 550 5.7.1 Email rejected per DMARC policy for "
        "example.com (in reply to end of DATA command)",
        ANY,
        "5.7.1",
        SignalClass.DMARC,
    ),
    (
        "mx.example.net[198.51.100.7]:25",
        "host mx.example.net[198.51.100.7] said: 550 5.7.23 The message was rejected because "
        "of Sender Policy Framework violation (in reply to RCPT TO command)",
        ANY,
        "5.7.23",
        SignalClass.SPF,
    ),
    (
        "mx.example.net[198.51.100.7]:25",
        "host mx.example.net[198.51.100.7] said: 550 5.7.20 No passing DKIM signature found "
        "(in reply to end of DATA command)",
        ANY,
        "5.7.20",
        SignalClass.DKIM,
    ),
]


@pytest.mark.parametrize(("relay", "reply", "receiver", "code", "klass"), REPLIES)
def test_each_published_reply_is_classified(
    relay: str, reply: str, receiver: Receiver, code: str, klass: SignalClass
) -> None:
    assert receiver_of(relay, reply) is receiver
    signal = classify(reply, receiver)
    assert signal is not None
    assert (signal.receiver, signal.code, signal.klass) == (receiver, code, klass)
    assert signal.cause and signal.fix


@pytest.mark.parametrize(
    "reply",
    [
        "host gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.1.1 The email account that "
        "you tried to reach does not exist. 550 5.1.1 h8si9 - gsmtp (in reply to RCPT TO command)",
        "host mx.example.net[198.51.100.7] said: 452 4.2.2 Mailbox full (in reply to RCPT TO "
        "command)",
        "250 2.0.0 Ok: queued as 4XyZ",
    ],
)
def test_a_reply_about_the_recipient_is_no_signal(reply: str) -> None:
    assert classify(reply, receiver_of("gmail-smtp-in.l.google.com", reply)) is None


def test_a_receivers_own_codes_are_not_read_in_other_replies() -> None:
    # "S3150" in a reply from an unknown server is not Microsoft's block list, nor TS03 Yahoo's.
    assert classify("550 5.1.1 user S3150 unknown", Receiver.OTHER) is None
    assert classify("550 5.1.1 user TS03 unknown", Receiver.OTHER) is None


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("host mx[142.5.77.1] said: 550 5.7.1 no", "5.7.1"),  # not the IP's "5.77.1"
        ("host mx[10.2.5.4] said: 421 Service not available", "421"),
        ("lost connection", ""),
    ],
)
def test_the_status_code_is_never_read_from_an_ip_address(reply: str, code: str) -> None:
    assert status_code(reply) == code


def test_the_same_reply_to_two_ips_groups_as_one_text() -> None:
    first = "550 5.7.1 Unfortunately, messages from [192.0.2.25] weren't sent [AM5EUR02FT027.eop-EUR02.prod.protection.outlook.com]"
    second = "550 5.7.1 Unfortunately, messages from [198.51.100.9] weren't sent [DB3EUR04FT003.eop-eur04.prod.protection.outlook.com]"
    assert normalized(first) == normalized(second)
    assert "<ip>" in normalized(first)


@pytest.mark.parametrize(
    ("relay", "receiver"),
    [
        ("gmail-smtp-in.l.google.com[142.250.27.26]:25", G),
        ("aspmx.l.google.com[142.250.27.26]:25", G),
        ("example-com.mail.protection.outlook.com[104.47.8.36]:25", M),
        ("mta7.am0.yahoodns.net[67.195.204.72]:25", Y),
        ("mx.example.net[198.51.100.7]:25", ANY),
        ("none", ANY),
    ],
)
def test_the_receiver_is_named_by_its_mx(relay: str, receiver: Receiver) -> None:
    assert receiver_of(relay) is receiver
