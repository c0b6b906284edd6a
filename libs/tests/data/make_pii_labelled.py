"""Writes pii_labelled.jsonl: lines of free text with planted PII (and its labels) and clean look-alike lines.

Deterministic (fixed seed), so rerunning it reproduces the committed file byte for byte:
    uv run python libs/tests/data/make_pii_labelled.py
Every planted value is generated valid (checksums, phone metadata) and checked with the library that defines it.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberFormat
from stdnum import iban, luhn
from stdnum.de import idnr
from stdnum.iso7064 import mod_11_10, mod_97_10
from stdnum.nl import bsn
from stdnum.us import ssn

OUT = Path(__file__).with_name("pii_labelled.jsonl")
rng = random.Random(20240115)

FIRST = ["anna", "john", "maria", "li", "omar", "sophie", "lukas", "priya", "jan", "emma", "noah", "fatima"]
LAST = ["smith", "mueller", "de-vries", "garcia", "chen", "okafor", "dubois", "kowalski", "jansen", "rossi"]
DOMAINS = [
    "example.com",
    "mail.example.co.uk",
    "corp.acme.io",
    "gmail.com",
    "uni-heidelberg.de",
    "posteo.net",
    "support.shop.example.org",
    "outlook.fr",
    "student.tudelft.nl",
]


def email() -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first}{rng.randint(1, 99)}",
            f"{first}+{rng.choice(['news', 'ml', 'x'])}",
            f"{first[0]}_{last}",
            f"{first}.{last}+billing",
            last.upper(),
        ]
    )
    return f"{local}@{rng.choice(DOMAINS)}"


US_AREAS = ["212", "415", "646", "312", "617", "206", "303", "512", "718", "202", "305", "404"]


def _valid(region: str, national: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(national, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def _random_number(region: str) -> phonenumbers.PhoneNumber:
    while True:
        if region == "US":
            national = rng.choice(US_AREAS) + str(rng.randint(200, 999)) + f"{rng.randint(0, 9999):04d}"
        else:
            kind = rng.choice([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE])
            example = phonenumbers.national_significant_number(phonenumbers.example_number_for_type(region, kind))
            national = example[:-4] + f"{rng.randint(0, 9999):04d}"
        number = _valid(region, national)
        if number is not None and (region != "US" or (national[3] not in "01" and national[4:6] != "11")):
            return number


def phone() -> str:
    region = rng.choice(["US", "US", "US", "GB", "GB", "DE", "DE", "FR", "NL", "IN", "AU", "ES", "JP", "BR"])
    number = _random_number(region)
    intl = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    nsn = phonenumbers.national_significant_number(number)
    styles = [intl, e164, intl.replace(" ", "-", 1), "00" + intl[1:]]
    if region == "US":
        a, b, c = nsn[:3], nsn[3:6], nsn[6:]
        styles += [national, f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"1-{a}-{b}-{c}", f"+1 ({a}) {b}-{c}", f"({a}) {b} {c}"]
    elif region == "GB":
        styles += [national, national.replace(" ", "-"), intl.replace(" ", " (0)", 1)]
    elif region == "DE":
        area, rest = national.split(" ", 1)
        styles += [national, f"{area}/{rest}", f"({area}) {rest}", f"{area}-{rest}"]
    return rng.choice(styles)


def card() -> str:
    brand = rng.choice(["visa", "visa", "mc", "mc2", "amex", "discover"])
    prefix, length = {
        "visa": ("4", 16),
        "mc": (str(rng.randint(51, 55)), 16),
        "mc2": (str(rng.randint(2221, 2720)), 16),
        "amex": (rng.choice(["34", "37"]), 15),
        "discover": ("6011", 16),
    }[brand]
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    number = body + luhn.calc_check_digit(body)
    assert luhn.is_valid(number)
    sep = rng.choice(["", " ", "-"])
    if length == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, 16, 4))


IBAN_COUNTRIES = {
    "DE": "8!n10!n",
    "GB": "4!a6!n8!n",
    "FR": "5!n5!n11!c2!n",
    "NL": "4!a10!n",
    "ES": "4!n4!n1!n1!n10!n",
    "IT": "1!a5!n5!n12!c",
    "BE": "3!n7!n2!n",
    "CH": "5!n12!c",
    "AT": "5!n11!n",
    "PL": "8!n16!n",
    "IE": "4!a6!n8!n",
}
BANKS = {"GB": ["NWBK", "WEST", "BARC", "HBUK"], "NL": ["ABNA", "INGB", "RABO"], "IE": ["AIBK", "BOFI"]}


def _bban(country: str, struct: str) -> str:
    out = []
    for pos, (count, kind) in enumerate(re.findall(r"(\d+)!([nac])", struct)):
        if kind == "a" and country in BANKS and pos == 0:
            out.append(rng.choice(BANKS[country]))
        else:
            alphabet = {
                "n": string.digits,
                "a": string.ascii_uppercase,
                "c": string.digits * 3 + string.ascii_uppercase,
            }
            out.append("".join(rng.choice(alphabet[kind]) for _ in range(int(count))))
    return "".join(out)


def iban_value() -> str:
    country = rng.choice(sorted(IBAN_COUNTRIES))
    while True:
        bban = _bban(country, IBAN_COUNTRIES[country])
        number = country + mod_97_10.calc_check_digits(bban + country) + bban
        if iban.is_valid(number):
            break
    return rng.choice([number, iban.format(number), iban.format(number)])


def ssn_value() -> str:
    while True:
        area = rng.randint(1, 899)
        value = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
        if ssn.is_valid(value):
            return value


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def nino_value() -> str:
    while True:
        prefix = rng.choice(NINO_FIRST) + rng.choice(NINO_SECOND)
        if prefix not in {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}:
            break
    digits = f"{rng.randint(0, 999999):06d}"
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{prefix}{digits}{suffix}"


def steuer_id() -> str:
    while True:
        digits = rng.sample(string.digits, 9)
        digits.insert(rng.randint(1, 9), rng.choice(digits))
        body = "".join(digits)
        if body[0] != "0":
            number = body + mod_11_10.calc_check_digit(body)
            if idnr.is_valid(number):
                return idnr.format(number)


def bsn_value() -> str:
    while True:
        body = f"{rng.randint(10000000, 99999999)}"
        for last in string.digits:
            if bsn.is_valid(body + last):
                return bsn.format(body + last)


def national_id() -> tuple[str, str]:
    choice = rng.choice(["ssn", "ssn", "nino", "nino", "idnr", "bsn"])
    return choice, {"ssn": ssn_value, "nino": nino_value, "idnr": steuer_id, "bsn": bsn_value}[choice]()


def ipv4() -> str:
    return rng.choice(
        [
            f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"203.0.113.{rng.randint(1, 254)}",
            f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        ]
    )


def ipv6() -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(6)]
    return rng.choice(
        [
            f"2001:db8:{groups[0]}:{groups[1]}::{groups[2]}",
            f"2a02:{':'.join(groups)}:1",
            f"fe80::{groups[0]}:{groups[1]}:{groups[2]}:{groups[3]}",
            f"2001:0db8:{':'.join(f'{int(g, 16):04x}' for g in groups)}".upper(),
            f"::ffff:{ipv4()}",
        ]
    )


SENTENCES_BEFORE = [
    "Hi team,",
    "Quick question:",
    "Ticket #4821 -",
    "From the support chat:",
    "Customer wrote:",
    "Note for the on-call:",
    "Hallo zusammen,",
    "Bonjour,",
    "Beste klant,",
    "",
]
SENTENCES_AFTER = [
    "Thanks!",
    "Can you check by Friday?",
    "See the attached log.",
    "Let me know.",
    "Danke.",
    "Merci d'avance.",
    "It happened again on 2024-03-02 at 14:05.",
    "Total was $1,299.99.",
    "",
]

TEMPLATES: dict[str, list[str]] = {
    "email": [
        "my email is {v}",
        "please write to {v} instead",
        "contact: {v}",
        "cc {v} on the reply",
        "Send the invoice to <{v}>.",
        "Kontakt: {v}",
        "reply-to={v}",
        "(or {v})",
    ],
    "phone": [
        "call me on {v}",
        "my number is {v}",
        "phone: {v}",
        "Tel. {v}",
        "reach me at {v} after 6pm",
        "WhatsApp {v} please",
        "mobile {v}, office closed",
        "Telefon: {v}",
    ],
    "card": [
        "my card number is {v}",
        "charged to card {v} twice",
        "CC: {v} exp 09/27",
        "Karte {v} wurde belastet",
        "the card ending in the digits {v} was declined",
        "paid with {v}",
    ],
    "iban": [
        "IBAN: {v}",
        "please refund to {v}",
        "Bankverbindung {v}",
        "wire it to account {v} (BIC on file)",
        "mon IBAN est {v}",
        "rekeningnummer {v}",
    ],
    "ip": [
        "login from {v} failed",
        "the server at {v} is down",
        "client_ip={v}",
        "blocked {v} in the firewall",
        "ssh admin@host -p 22 via {v}",
        "traffic spike from {v}, port 443",
    ],
    "ssn": ["SSN {v}", "my social security number is {v}", "SSN: {v} on the W-2"],
    "nino": ["NI number {v}", "National Insurance number: {v}", "my NINO is {v}"],
    "idnr": ["Steuer-ID {v}", "meine Steuer-IdNr. lautet {v}", "tax id {v}"],
    "bsn": ["BSN {v}", "mijn burgerservicenummer is {v}", "BSN: {v}"],
}
GENERATORS: dict[str, Callable[[], str]] = {
    "email": email,
    "phone": phone,
    "card": card,
    "iban": iban_value,
    "ip": lambda: rng.choice([ipv4, ipv4, ipv6])(),
}


def planted_line() -> dict:
    items, phrases = [], []
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        kind = rng.choice(["email", "phone", "phone", "card", "iban", "ip", "national_id"])
        if kind == "national_id":
            template_key, value = national_id()
        else:
            template_key, value = kind, GENERATORS[kind]()
        phrases.append(rng.choice(TEMPLATES[template_key]).format(v=value))
        items.append({"kind": kind, "value": value})
    text = " ".join(
        p for p in [rng.choice(SENTENCES_BEFORE), ", and ".join(phrases) + ".", rng.choice(SENTENCES_AFTER)] if p
    )
    return {"text": text, "pii": items}


def bad_luhn() -> str:
    body = "4" + "".join(rng.choice(string.digits) for _ in range(14))
    wrong = str((int(luhn.calc_check_digit(body)) + rng.randint(1, 9)) % 10)
    return " ".join((body + wrong)[i : i + 4] for i in range(0, 16, 4))


def bad_iban() -> str:
    value = iban_value().replace(" ", "")
    check = (int(value[2:4]) + rng.randint(1, 50)) % 97 + 2
    return iban.format(f"{value[:2]}{check:02d}{value[4:]}")


def hexstr(n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def uuid() -> str:
    h = hexstr(32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


ri = rng.randint
ISBNS = ["978-3-16-148410-0", "978-0-306-40615-7", "0-306-40615-2", "9780262033848", "978-1-4028-9462-6"]
BARCODES = ["4006381333931", "5901234123457", "4012345678901", "8710398503442"]

CLEAN: list[Callable[[], str]] = [
    lambda: f"The meeting moved to {ri(2020, 2026)}-{ri(1, 12):02d}-{ri(1, 28):02d} at {ri(8, 18)}:{ri(10, 59)}.",
    lambda: f"Am {ri(1, 28):02d}.{ri(1, 12):02d}.{ri(2020, 2026)} um {ri(8, 18)}:30 Uhr geht es los.",
    lambda: f"Delivery window: {ri(1, 12)}/{ri(1, 28)}/{ri(2023, 2026)} between 10:30-11:45.",
    lambda: f"The total comes to ${ri(1, 9)},{ri(100, 999)}.{ri(10, 99)} including tax ({ri(5, 20)}%).",
    lambda: f"Preis: {ri(10, 999)},{ri(10, 99)} EUR, Lieferung {ri(2, 5)}-{ri(6, 9)} Tage.",
    lambda: f"Order #{ri(100000, 999999)} shipped; tracking number 1Z{ri(100, 999)}AA1{ri(10**9, 10**10 - 1)}.",
    lambda: f"Your order number is {ri(10**9, 10**10 - 1)} and the invoice INV-{ri(2020, 2026)}-{ri(1, 99999):05d}.",
    lambda: f"Reference ORD-{ri(2020, 2026)}-{ri(1, 999999):06d} was refunded.",
    lambda: f"Upgrade to v{ri(1, 9)}.{ri(0, 20)}.{ri(0, 30)} fixed it; pi is roughly 3.14.",
    lambda: f"Python 3.11.{ri(1, 9)} and Chrome {ri(100, 125)}.0.{ri(1000, 6999)}.{ri(100, 299)} are installed.",
    lambda: f"ISBN {rng.choice(ISBNS)} is out of print.",
    lambda: f"Card {bad_luhn()} was rejected by the form because the check digit is wrong.",
    lambda: f"The test used {ri(10**15, 10**16 - 1)} as a seed value.",
    lambda: f"request_id={uuid()} trace={hexstr(32)}",
    lambda: f"commit {hexstr(40)} (short {hexstr(7)}) touched {ri(2, 40)} files.",
    lambda: f"sha256: {hexstr(64)}",
    lambda: f"Solve {ri(2, 99)} * {ri(100, 9999)} + {ri(1, 999)} = ? and then divide by {ri(2, 9)}.",
    lambda: f"x = np.arange({ri(10, 1000)})[::2]; y = x[1::{ri(2, 5)}]",
    lambda: "std::vector<int> v; auto n = u8::MAX; Foo::bar();",
    lambda: f"The race finished in {ri(1, 3)}:{ri(10, 59)}:{ri(10, 59)}.{ri(10, 99)}.",
    lambda: f"Invalid IBAN {bad_iban()} was rejected.",
    lambda: f"Not a real SSN: {rng.choice(['000', '666', '900', '987'])}-{ri(10, 99)}-{ri(1000, 9999)}.",
    lambda: f"Bad address {ri(256, 999)}.{ri(0, 255)}.{ri(0, 255)}.{ri(0, 255)} in the config.",
    lambda: f"Timestamp {ri(1600000000000, 1799999999999)} ms since epoch.",
    lambda: f"Barcode {rng.choice(BARCODES)} on the box.",
    lambda: f"Population grew to {ri(1, 999)},{ri(100, 999)},{ri(100, 999)} by {ri(1990, 2024)}.",
    lambda: f"Coordinates {rng.uniform(-90, 90):.4f}, {rng.uniform(-180, 180):.4f}.",
    lambda: f"Resolution 1920x1080 at 16:9, {rng.choice([60, 120, 144])} Hz; cpu: 500m, memory: 512Mi.",
    lambda: f"Weights {rng.random():.2f} {rng.random():.2f} {rng.random():.2f} {rng.random():.2f} sum to about one.",
    lambda: f"MAC 00:1A:2B:{ri(10, 99)}:4D:5E on port {ri(1, 48)}.",
    lambda: "Use icon@2x.png and ping @alice; install react@18.2.0 and @types/node; the decorator is @app.get('/').",
    lambda: "Ask user@localhost or admin@intranet if the mail relay fails.",
    lambda: f"Call extension {ri(100, 999)} or dial 555-0{ri(100, 199)} inside the building.",
    lambda: f"Part no. {ri(100, 999)}-{ri(1000, 9999)}-{ri(10, 99)} is back in stock.",
    lambda: f"Order {ri(100000000, 999999999)} and item {ri(10**10, 10**11 - 1)} are on hold.",
    lambda: f"Score was {ri(0, 5)}-{ri(0, 5)} after {ri(60, 95)} minutes; {ri(10, 99)}.{ri(0, 9)}% possession.",
    lambda: f"Zip code {ri(10000, 99999)}, postcode SW1A 1AA, PLZ {ri(10000, 99999)}.",
    lambda: f"The loss dropped from {rng.uniform(1, 3):.4f} to {rng.uniform(0, 1):.4f} after {ri(1000, 99999)} steps.",
    lambda: f"Section 4.{ri(1, 9)}.{ri(1, 9)} of RFC {ri(1000, 9999)} covers it.",
    lambda: f"Room 12-{ri(100, 999)}, floor {ri(1, 30)}, desk {ri(1, 200)}.",
    lambda: f"Timestamps 2024-01-15T10:{ri(10, 59)}:00Z and {ri(20240101, 20241231)}{ri(100000, 235959)}.",
    lambda: f"Values {ri(100, 999)} {ri(100, 999)} {ri(100, 999)} {ri(100, 999)} and ports 8080 8443 {ri(3000, 9999)}.",
    lambda: f"It took {ri(1999, 2010)}-{ri(2011, 2024)}, pages {ri(100, 400)}-{ri(401, 800)} ({ri(1990, 2024)}).",
]


def main() -> None:
    lines = [planted_line() for _ in range(190)]
    lines += [{"text": rng.choice(CLEAN)(), "pii": []} for _ in range(120)]
    # Guaranteed coverage of every national id type, whatever the draw above.
    for key, make in (("ssn", ssn_value), ("nino", nino_value), ("idnr", steuer_id), ("bsn", bsn_value)):
        for _ in range(4):
            value = make()
            lines.append(
                {
                    "text": rng.choice(TEMPLATES[key]).format(v=value) + ".",
                    "pii": [{"kind": "national_id", "value": value}],
                }
            )
    rng.shuffle(lines)
    with OUT.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
