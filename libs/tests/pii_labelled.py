"""A labelled PII set generated with Faker, seeded: sentences in seven locales with planted items of every kind, and
clean sentences full of look-alikes (versions, dates, prices, ISBNs, EANs, IMEIs, UUIDs, hashes, non-Luhn ids,
payment and customer references, code).

Each planted item is written the way Faker writes it for the locale (``phone_number``, ``ssn``, ``iban``, ``ipv4``,
``credit_card_number`` of every card type, ``nif``/``nie``, ``itin``), sometimes in a second common layout (cards and
IBANs in groups of four, a NIR with spaces). The German Steuer-ID, which Faker lacks, is made valid through
``python-stdnum``. A row is ``{"text", "locale", "pii": [{"kind", "value"}]}``; every value occurs in the text.
"""

from __future__ import annotations

import random
import string
import uuid
from typing import Any

from faker import Faker
from stdnum import ean, isbn, iso11649, luhn
from stdnum.de import idnr
from stdnum.iso7064 import mod_11_10, mod_97_10

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL")
KINDS = ("email", "phone", "card", "iban", "ip", "national_id")
CARD_TYPES = ("maestro", "mastercard", "visa13", "visa16", "visa19", "amex", "discover", "diners", "jcb15", "jcb16")

# Sentence frames per language; {v} is the planted value. Phones and ids are named the way people name them.
PHONE_FRAMES = {
    "en": [
        "Call me at {v} after six.",
        "You can reach our office on {v} any weekday.",
        "My mobile number is {v}, text me when you land.",
        "Tel: {v} | Fax: none",
        "{name} asked us to phone back on {v} about the refund.",
        "Please ring {v} to confirm the appointment.",
        "Contact: {name}, {v}",
        "The number on file is {v}.",
        "Support hotline {v} (24/7).",
        "he left a voicemail from {v} this morning",
    ],
    "de": [
        "Rufen Sie mich unter {v} an.",
        "Telefon: {v}",
        "Meine Handynummer ist {v}, bitte nur abends.",
        "Erreichbar unter Tel. {v} von 9 bis 17 Uhr.",
        "{name} bittet um Rückruf unter {v}.",
        "Kontakt: {name}, {v}",
    ],
    "fr": [
        "Appelez-moi au {v} après 18h.",
        "Téléphone : {v}",
        "Mon portable est le {v}, merci de laisser un message.",
        "Vous pouvez joindre {name} au {v}.",
        "Tél. {v} - accueil du lundi au vendredi",
        "Contact : {name}, {v}",
    ],
    "it": [
        "Chiamami al {v} dopo le sei.",
        "Telefono: {v}",
        "Il mio cellulare è {v}, scrivimi su WhatsApp.",
        "Per informazioni contattare {name} al numero {v}.",
        "Tel. {v} (ufficio)",
        "Recapito di {name}: {v}",
    ],
    "es": [
        "Llámame al {v} cuando llegues.",
        "Teléfono: {v}",
        "Mi móvil es el {v}, mándame un mensaje.",
        "Puede contactar con {name} en el {v}.",
        "Tel. {v} (oficina central)",
        "Contacto: {name}, {v}",
    ],
    "nl": [
        "Bel me op {v} na zessen.",
        "Telefoon: {v}",
        "Mijn mobiele nummer is {v}, stuur gerust een bericht.",
        "U kunt {name} bereiken op {v}.",
        "Tel. {v} (kantoor)",
        "Contact: {name}, {v}",
    ],
}
ID_FRAMES = {
    "en_US": [
        "My SSN is {v}.",
        "SSN: {v}",
        "Social Security number {v} on the W-2",
        "ITIN {v} for the tax return",
        "taxpayer id {v} attached",
        "{name}, social security no. {v}, DOB on file",
    ],
    "en_GB": [
        "NI number: {v}",
        "My National Insurance number is {v}.",
        "NINO {v} for payroll",
        "{name} (national insurance {v}) starts Monday",
        "Please quote your NI no. {v} in all letters.",
    ],
    "de_DE": [
        "Steuer-ID: {v}",
        "Meine Steueridentifikationsnummer lautet {v}.",
        "IdNr. {v} bitte eintragen",
        "{name}, Identifikationsnummer {v}",
        "Steuerliche Identifikationsnummer: {v}",
    ],
    "fr_FR": [
        "Numéro de sécurité sociale : {v}",
        "Mon NIR est le {v}.",
        "N° SS {v} pour la mutuelle",
        "{name}, numéro d'inscription au répertoire {v}",
        "sécu : {v}",
    ],
    "it_IT": [
        "Codice fiscale: {v}",
        "Il mio codice fiscale è {v}.",
        "CF {v} per la fattura",
        "{name}, C.F. {v}",
        "Inserire il codice fiscale {v} nel modulo.",
    ],
    "es_ES": [
        "DNI: {v}",
        "Mi NIE es {v}.",
        "NIF {v} para la factura",
        "{name}, con DNI {v}, firma el contrato",
        "Documento de identidad {v}",
    ],
    "nl_NL": [
        "BSN: {v}",
        "Mijn burgerservicenummer is {v}.",
        "sofinummer {v} voor de loonadministratie",
        "{name}, BSN {v}, heeft het formulier getekend",
        "Vul uw BSN in: {v}",
    ],
}
CARD_FRAMES = [
    "Charge it to card {v}, expiry 09/27.",
    "I paid with my {brand} {v} yesterday.",
    "card number: {v}",
    "{name} gave us the card {v} over the phone",
    "Refund to {v} please.",
    "Kartennummer {v}",
    "numéro de carte {v}",
    "carta di credito {v}",
    "tarjeta {v}",
    "The {brand} ending up in the log was {v}.",
]
IBAN_FRAMES = [
    "Please transfer the deposit to {v}.",
    "IBAN: {v}",
    "Bankverbindung {v}, BIC folgt",
    "virement sur le compte {v}",
    "Pagamento su {v} entro venerdì",
    "Cuenta {v} a nombre de {name}",
    "Rekeningnummer {v} t.n.v. {name}",
    "{name} changed the payout account to {v}.",
]
IP_FRAMES = [
    "Login from {v} was blocked.",
    "The server at {v} stopped answering.",
    '{v} - - [12/Mar/2024:10:15:32 +0000] "GET /index.html HTTP/1.1" 200 512',
    "connect to {v}:8080 failed: connection refused",
    "client {v} requested /api/v1/users",
    "Her laptop had the address {v} on the guest network.",
    "ssh admin@{v}",
    "blocked IP {v} after 5 failed attempts",
]
EMAIL_FRAMES = [
    "Write to {v} for the invoice.",
    "email: {v}",
    "{name} <{v}> wrote:",
    "Schreiben Sie an {v}.",
    "Envoyez votre CV à {v}.",
    "cc {v} on the thread please",
]
LANGUAGE = {loc: loc[:2] for loc in LOCALES}

Row = dict[str, Any]


def labelled_rows(seed: int, planted: int = 2000, clean: int = 1000) -> list[Row]:
    """``planted`` rows with one or two PII items each (locales in turn) and ``clean`` look-alike rows, shuffled."""
    rng = random.Random(seed)
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for n, fake in enumerate(fakers.values()):
        fake.seed_instance(seed * 100 + n)
    rows = [_planted_row(rng, fakers[LOCALES[i % len(LOCALES)]], LOCALES[i % len(LOCALES)]) for i in range(planted)]
    rows += [{"text": _clean_text(rng), "locale": None, "pii": []} for _ in range(clean)]
    rng.shuffle(rows)
    return rows


def _planted_row(rng: random.Random, fake: Faker, locale: str) -> Row:
    kinds = [rng.choice(KINDS)]
    if rng.random() < 0.25:
        kinds.append(rng.choice(KINDS))
    items = [{"kind": kind, "value": _value(rng, fake, locale, kind)} for kind in kinds]
    name = fake.name()
    text = " ".join(_framed(rng, locale, item, name) for item in items)
    return {"text": text, "locale": locale, "pii": items}


def _framed(rng: random.Random, locale: str, item: dict[str, str], name: str) -> str:
    frame, value = _frame(rng, locale, item["kind"], name), item["value"]
    if ":" in value and "{v}:" in frame:
        frame = frame.replace("{v}:", "[{v}]:")  # an IPv6 address with a port is written in brackets
    return frame.replace("{v}", value)


def _frame(rng: random.Random, locale: str, kind: str, name: str) -> str:
    frame = {
        "phone": lambda: rng.choice(PHONE_FRAMES[LANGUAGE[locale]]),
        "national_id": lambda: rng.choice(ID_FRAMES[locale]),
        "card": lambda: rng.choice(CARD_FRAMES),
        "iban": lambda: rng.choice(IBAN_FRAMES),
        "ip": lambda: rng.choice(IP_FRAMES),
        "email": lambda: rng.choice(EMAIL_FRAMES),
    }[kind]()
    return frame.replace("{name}", name).replace("{brand}", rng.choice(["Visa", "card", "Mastercard", "Amex"]))


def _value(rng: random.Random, fake: Faker, locale: str, kind: str) -> str:
    if kind == "email":
        return rng.choice([fake.email, fake.free_email, fake.company_email])()
    if kind == "phone":
        return fake.phone_number()
    if kind == "card":
        number = fake.credit_card_number(card_type=rng.choice(CARD_TYPES))
        return _grouped(rng, number, 4) if rng.random() < 0.3 and len(number) == 16 else number
    if kind == "iban":
        number = fake.iban()
        return _grouped(rng, number, 4, separators=" ") if rng.random() < 0.3 else number
    if kind == "ip":
        return fake.ipv6() if rng.random() < 0.15 else rng.choice([fake.ipv4, fake.ipv4_public, fake.ipv4_private])()
    return _national_id(rng, fake, locale)


def _national_id(rng: random.Random, fake: Faker, locale: str) -> str:
    if locale == "en_US":
        return fake.itin() if rng.random() < 0.4 else fake.ssn()
    if locale == "de_DE":
        number = _steuer_id(rng)
        return idnr.format(number) if rng.random() < 0.5 else number
    if locale == "es_ES":
        return fake.nie() if rng.random() < 0.4 else fake.nif()
    number = fake.ssn()
    if locale == "fr_FR" and rng.random() < 0.3:
        return f"{number[0]} {number[1:3]} {number[3:5]} {number[5:7]} {number[7:10]} {number[10:13]} {number[13:]}"
    return number


def _steuer_id(rng: random.Random) -> str:
    while True:
        body = str(rng.randint(1, 9)) + "".join(rng.choice(string.digits) for _ in range(9))
        number = body + mod_11_10.calc_check_digit(body)
        if idnr.is_valid(number):
            return number


def _grouped(rng: random.Random, number: str, size: int, separators: str = " -") -> str:
    sep = rng.choice(separators)
    return sep.join(number[i : i + size] for i in range(0, len(number), size))


# Clean rows: look-alikes of every kind, in the contexts where they occur.
def _digits(rng: random.Random, n: int, first: str = "123456789") -> str:
    return rng.choice(first) + "".join(rng.choice(string.digits) for _ in range(n - 1))


def _non_luhn(rng: random.Random, n: int) -> str:
    while True:
        number = rng.choice("3456") + _digits(rng, n - 1, string.digits)
        if not luhn.is_valid(number):
            return number


def _version(rng: random.Random) -> str:
    parts = rng.choice([3, 4, 4])
    return ".".join(str(rng.randint(0, 30 if i else 12)) for i in range(parts - 1)) + f".{rng.randint(0, 250)}"


def _rf_reference(rng: random.Random) -> str:
    body = _digits(rng, rng.choice([12, 16, 20]), string.digits)
    reference = f"RF{mod_97_10.calc_check_digits(body + 'RF')}{body}"
    assert iso11649.is_valid(reference)
    return iso11649.format(reference)


def _ean13(rng: random.Random) -> str:
    body = rng.choice(["400", "401", "40", "50", "54", "76", "80", "84", "87", "30"]) + _digits(rng, 10, string.digits)
    return body[:12] + ean.calc_check_digit(body[:12])


def _isbn(rng: random.Random) -> str:
    body = "978" + _digits(rng, 9, string.digits)
    number = body + ean.calc_check_digit(body)
    return isbn.format(number) if rng.random() < 0.5 else number


def _imei(rng: random.Random) -> str:
    body = rng.choice(["35", "86", "01", "99"]) + _digits(rng, 12, string.digits)
    return body + luhn.calc_check_digit(body)


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice(
        [
            f"{y}-{m:02}-{d:02}",
            f"{d:02}/{m:02}/{y}",
            f"{d:02}.{m:02}.{y}",
            f"{m}/{d}/{y}",
            f"{d:02}-{m:02}-{y}",
            f"{y}{m:02}{d:02}",
        ]
    )


def _price(rng: random.Random) -> str:
    amount = rng.randint(1, 99999) + rng.randint(0, 99) / 100
    return rng.choice(
        [
            f"${amount:,.2f}",
            f"{amount:.2f} €",
            f"€{amount:,.2f}",
            f"£{amount:.2f}",
            f"{amount:,.2f}".replace(",", " ").replace(".", ",") + " EUR",
        ]
    )


CLEAN_FRAMES = [
    ("We upgraded to {version} last night and the leak is gone.", "version"),
    ("Bumped the base image to version {version}.", "version"),
    ("Release {version} ships the new tokenizer.", "version"),
    ("pip install torch=={version}", "version"),
    ("Running v{version} on all nodes since {date}.", "version"),
    ("Firmware {version} fixes the Wi-Fi drop.", "version"),
    ("Build {version} failed on the ARM runner.", "version"),
    ("The meeting moved to {date} at {time}.", "date"),
    ("Invoice dated {date}, due {date2}.", "date"),
    ("Total: {price} incl. VAT, paid on {date}.", "price"),
    ("The flat costs {price} per month plus {price2} charges.", "price"),
    ("ISBN {isbn}, second edition, {year}.", "isbn"),
    ("Scan the barcode: EAN {ean}", "ean"),
    ("Product GTIN {ean} is out of stock.", "ean"),
    ("IMEI {imei} was reported stolen.", "imei"),
    ("Device serial {imei} registered.", "imei"),
    ("request id {uuid} timed out", "uuid"),
    ("commit {sha} fixes the flaky test", "hash"),
    ("sha256: {sha256}", "hash"),
    ("Order #{order} shipped on {date}.", "order"),
    ("Your ticket number is {order}.", "order"),
    ("Member id {nonluhn16} was merged into {nonluhn15}.", "non-luhn id"),
    ("Account ref {nonluhn16}", "non-luhn id"),
    ("Payment reference {rf} must be quoted.", "rf"),
    ("Zahlungsreferenz {rf}", "rf"),
    ("customer ref {spaced}", "customer ref"),
    ("Kundennummer {spaced}", "customer ref"),
    ("x = data[{a}:{b}]; y = 0x{hex}", "code"),
    ("for i in range({order}): total += i * {a}.{b}", "code"),
    ("SELECT * FROM events WHERE id > {order} LIMIT {a};", "code"),
    ("timestamp {ts} ms, latency {a}.{b} ms", "code"),
    ("The run took {time} and used {a}.{b} GB of memory.", "measure"),
    ("Coordinates {lat}, {lon}", "measure"),
    ("Score went from {a}.{b} to {c}.{b} ({pct}%).", "measure"),
    ("Room {a}, building {b}, floor {c}.", "measure"),
    ("Tracking: 1Z{alnum}", "order"),
    ("Postcode {zip}, PO box {a}", "measure"),
    ("Batch {a}-{b}-{c} passed QA on {date}.", "order"),
]


def _clean_text(rng: random.Random) -> str:
    frame, _ = rng.choice(CLEAN_FRAMES)
    values = {
        "version": _version(rng),
        "date": _date(rng),
        "date2": _date(rng),
        "time": f"{rng.randint(0, 23):02}:{rng.randint(0, 59):02}",
        "price": _price(rng),
        "price2": _price(rng),
        "isbn": _isbn(rng),
        "year": str(rng.randint(1990, 2025)),
        "ean": _ean13(rng),
        "imei": _imei(rng),
        "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
        "sha": f"{rng.getrandbits(160):040x}"[: rng.choice([7, 12, 40])],
        "sha256": f"{rng.getrandbits(256):064x}",
        "order": _digits(rng, rng.randint(5, 12)),
        "nonluhn16": _non_luhn(rng, 16),
        "nonluhn15": _non_luhn(rng, 15),
        "rf": _rf_reference(rng),
        "spaced": " ".join(_digits(rng, 4, string.digits) for _ in range(4)),
        "a": str(rng.randint(0, 999)),
        "b": str(rng.randint(0, 99)),
        "c": str(rng.randint(0, 999)),
        "hex": f"{rng.getrandbits(32):x}",
        "ts": str(rng.randint(1_500_000_000_000, 1_800_000_000_000)),
        "lat": f"{rng.uniform(-90, 90):.6f}",
        "lon": f"{rng.uniform(-180, 180):.6f}",
        "pct": f"{rng.uniform(0, 100):.1f}",
        "alnum": "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
        "zip": rng.choice([_digits(rng, 5), f"{_digits(rng, 5)}-{_digits(rng, 4, string.digits)}", "SW1A 1AA"]),
    }
    return frame.format(**values)
