"""Print, as JSON, the text body Python's email package finds in each
message named on the command line: the corpus test of the Emergency Inbox
checks that the reading view shows the same text.

For each file: get_body() preferring plain text, else the first text part
of the message's walk, else the payload when it stayed a string (a
multipart whose structure is lost); "how" says which. Beside it, the
subject and the sender addresses, which the inbox list must show.
"""
import email
import json
import sys
from email import policy


def header(msg):
    subject = str(msg['subject'] or '')
    try:
        senders = [a.addr_spec for a in msg['from'].addresses if a.username] if msg['from'] else []
    except (AttributeError, IndexError, ValueError):
        senders = []
    return {'subject': subject, 'senders': senders}


def expected(path):
    with open(path, 'rb') as f:
        msg = email.message_from_binary_file(f, policy=policy.default)
    return dict(body(path, msg), **header(msg))


def body(path, msg):
    body, how = msg.get_body(preferencelist=('plain', 'html')), 'get_body'
    if body is None:
        how = 'first_text_part'
        body = next((p for p in msg.walk() if p.get_content_maintype() == 'text'), None)
    if body is None:
        payload = msg.get_payload()
        if isinstance(payload, str):
            return {'file': path, 'how': 'raw', 'type': 'text/plain', 'text': payload}
        return {'file': path, 'how': 'none', 'type': '', 'text': ''}
    try:
        text = body.get_content()
    except (LookupError, UnicodeError):
        text = (body.get_payload(decode=True) or b'').decode('utf-8', 'replace')
    return {'file': path, 'how': how, 'type': body.get_content_type(), 'text': text}


json.dump([expected(p) for p in sys.argv[1:]], sys.stdout)
