"""The per-key normalizers and the hashing step: docs/capi.md §3.8 and the rules table, pinned."""

from __future__ import annotations

import phonenumbers
import pytest

from stream.core.normalize.dates import parse_birth_date
from stream.core.normalize.geo import country_code, country_of_hash, currency_code
from stream.core.normalize.keys import NORMALIZERS, KeyContext, hash_value
from stream.core.normalize.phone import _SEPARATORS, _fast, _slow, normalize_phone
from stream.core.normalize.text import prepare, sha256_hex

US = KeyContext(current_year=2026, default_region="US")
HEX64 = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"

# docs/capi.md §3.8, first table: input → "Proposed canonical" (default region US). None = dropped.
SECTION_3_8_NORMALIZATION = [
    ("em", " John_Smith@Gmail.com ", "john_smith@gmail.com"),
    ("em", "foo@bar", None),
    ("ph", "+1 (650) 555-1212", "16505551212"),
    ("ph", "(650)555-1212", "16505551212"),
    ("ph", "0044 20 7946 0958", "442079460958"),
    ("ph", "+44 (0)20 7946 0958", "442079460958"),
    ("ph", "650.555.1212", "16505551212"),
    ("fn", "Mary-Jane", "maryjane"),
    ("ln", "O'Brien", "obrien"),
    ("ct", "Washington D.C.", "washingtondc"),
    ("ct", "Saint-Étienne", "saintétienne"),
    ("st", "California", "ca"),
    ("st", "N.Y.", "ny"),
    ("zp", "94035-1234", "94035"),
    ("zp", "M1 1AE", "m11ae"),
    ("country", "United States", "us"),
    ("country", "u.s.", "us"),
    ("db", "1997-02-16", "19970216"),
    ("db", "2/16/1997", "19970216"),
    ("ge", "Female", "f"),
]

# docs/capi.md §3.8, second table: normalized string → SHA-256 on the wire.
SECTION_3_8_HASHES = [
    ("john_smith@gmail.com", HEX64),
    ("test@example.com", "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"),
    ("16505551212", "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"),
    ("12345678901", "254aa248acb47dd654ca3ea53f48c2c26d641d23d7e2e93a1ec56258df7674c4"),
    ("442079460958", "35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823"),
    ("6505551212", "5eed6d50c9a69704a9a72b4af7d14d04d33e4460039e101b525f5d4f8a106a38"),
    ("mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
    ("valéry", "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),
    ("정", "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"),
    ("obrien", "b4cb6cb33fe4b865868de825023a1e2790dc12ac01ecc8d7c5afe8254071c8ba"),
    ("maryjane", "f08f448a5e7a9dc3619bb7c129f6a7d5fc6af002cea17ad71dfdc1c68f4d4e0e"),
    ("19970216", "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c"),
    ("f", "252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111"),
    ("m", "62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a"),
    ("newyork", "350c754ba4d38897693aa077ef43072a859d23f613443133fecbbd90a3512ca5"),
    ("washingtondc", "911fa18df8b2a4ff2652c32a0efa25516115d6fb0170849a41f38113e5371fe0"),
    ("ca", "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126"),
    ("ny", "1b06e2003f8420d6fa42badd8f77ec0f706b976b7a48b13c567dc5a559681683"),
    ("94035", "1794327a4d443904421f5ca1f3d72d0a62ba2f0770d80755ec2220fc0efb052e"),
    ("m11ae", "1dc694c2070e697769fb959b50671d76cafd430d8ca191fbdd0affcaea344ac5"),
    ("us", "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"),
    ("gb", "0b407281768f0e833afef47ed464b6571d01ca4d53c12ce5c51d1462f4ad6677"),
    ("user-123", "fcdec6df4d44dbc637c7c5b58efface52a7f8a88535423430255be0bb89bedd8"),
    ("georg", "d6e075ad15048c12f2974d121a25c3d9fc5898072c7a4236fe5245d342a41c7d"),
    ("washi", "9d2d55c43c373dd682cd3825b74f8de58c3ca0ba011471230d7a5eff939bd544"),
    ("a", "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"),
    ("01", "938db8c9f82c8cb58d3f3ef4fd250036a48d26a712753d2fde5abd03a85cabf4"),
    ("2000", "81a83544cf93c245178cbc1620030f1123f435af867c79d87135983c52ab39d9"),
]

# Every normalizer's docstring examples: the table of keys.py, as tests.
DOCSTRING_EXAMPLES = [
    ("em", " John_Smith@Gmail.com ", "john_smith@gmail.com"),
    ("em", "foo@bar", None),
    ("ph", "(650)555-1212", "16505551212"),
    ("ph", "555-1212", None),
    ("fn", "Mary-Jane", "maryjane"),
    ("fn", "Valéry", "valéry"),
    ("ln", "O'Brien", "obrien"),
    ("ln", "정", "정"),
    ("ct", "Washington D.C.", "washingtondc"),
    ("ct", "Saint-Étienne", "saintétienne"),
    ("st", "California", "ca"),
    ("st", "N.Y.", "ny"),
    ("zp", "94035-1234", "94035"),
    ("zp", "M1 1AE", "m11ae"),
    ("country", "United States", "us"),
    ("country", "u.s.", "us"),
    ("country", "FRA", "fr"),
    ("country", "xx", None),
    ("db", "2/16/1997", "19970216"),
    ("db", "1997-02-16", "19970216"),
    ("ge", "Female", "f"),
    ("ge", "Mr.", "m"),
    ("ge", "x", None),
    ("external_id", " User-123 ", "user-123"),
    ("f5first", "George", "georg"),
    ("f5last", "Washington", "washi"),
    ("fi", "ABC", "a"),
    ("dobd", "1", "01"),
    ("dobd", "32", None),
    ("dobm", "2", "02"),
    ("dobm", "February", "02"),
    ("dobm", "13", None),
    ("doby", "2000", "2000"),
    ("doby", "1899", None),
]


@pytest.mark.parametrize(("key", "raw", "expected"), SECTION_3_8_NORMALIZATION)
def test_section_3_8_inputs_normalize_to_the_proposed_canonical(
    key: str, raw: str, expected: str | None
) -> None:
    """Every input of docs/capi.md §3.8's first table gives the 'Proposed canonical' column (US)."""
    assert NORMALIZERS[key](raw, US) == expected


@pytest.mark.parametrize(("normalized", "digest"), SECTION_3_8_HASHES)
def test_section_3_8_hash_vectors(normalized: str, digest: str) -> None:
    """The SHA-256 of each normalized string is the value of docs/capi.md §3.8's second table."""
    assert sha256_hex(normalized) == digest


@pytest.mark.parametrize(("key", "raw", "expected"), DOCSTRING_EXAMPLES)
def test_each_normalizer_does_what_its_docstring_example_says(
    key: str, raw: str, expected: str | None
) -> None:
    """The example in each key function's docstring is what the function returns."""
    assert NORMALIZERS[key](raw, US) == expected


def test_the_table_covers_every_hashed_and_legacy_key() -> None:
    """NORMALIZERS has exactly one function per hashed and legacy user_data key."""
    from stream.core.capi import HASHED_KEYS, LEGACY_HASHED_KEYS

    assert set(NORMALIZERS) == set(HASHED_KEYS) | set(LEGACY_HASHED_KEYS)


def test_nfd_input_hashes_like_nfc() -> None:
    """A decomposed 'Valéry' (as macOS writes it) hashes to Meta's published NFC hash."""
    decomposed = "Vale\u0301ry"
    warnings: list[str] = []
    assert hash_value("fn", decomposed, US, warnings) == (
        "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"
    )
    assert prepare(decomposed) == "valéry"


def test_hash_value_goes_from_raw_input_to_the_wire_hash() -> None:
    """hash_value chains the normalizer and SHA-256: ' John_Smith@Gmail.com ' → 62a14e44…."""
    assert hash_value("em", " John_Smith@Gmail.com ", US, []) == HEX64


def test_a_64_hex_value_is_kept_lowercased_not_rehashed() -> None:
    """An upper-case 64-hex value is already hashed: kept, lowercased, with no warning."""
    warnings: list[str] = []
    assert hash_value("em", f"  {HEX64.upper()} ", US, warnings) == HEX64
    assert warnings == []


def test_a_parameter_builder_value_is_kept_unchanged() -> None:
    """``<64 hex>.<appendix>`` from Meta's parameter builder passes through as it came."""
    value = f"{HEX64}.AQQCAQIB"
    assert hash_value("ph", f" {value} ", US, []) == value


def test_an_md5_shaped_value_is_kept_with_a_warning() -> None:
    """32 hex characters are kept lowercased and counted as ``<key>_md5_shape``."""
    warnings: list[str] = []
    md5 = "0123456789ABCDEF0123456789abcdef"
    assert hash_value("em", md5, US, warnings) == md5.lower()
    assert warnings == ["em_md5_shape"]


def test_almost_hex_is_treated_as_clear_text() -> None:
    """63 hex characters are no hash: the key's own rule applies (here: not an email)."""
    warnings: list[str] = []
    assert hash_value("em", HEX64[:63], US, warnings) is None
    assert warnings == ["em_invalid_dropped"]


def test_an_invalid_value_records_the_key_never_the_value() -> None:
    """A dropped value leaves ``<key>_invalid_dropped``, which does not quote the value."""
    warnings: list[str] = []
    assert hash_value("ph", "call me maybe", US, warnings) is None
    assert warnings == ["ph_invalid_dropped"]


def test_blank_values_are_dropped_silently() -> None:
    """Empty and whitespace-only values are absent values, not invalid ones."""
    warnings: list[str] = []
    assert hash_value("em", "   ", US, warnings) is None
    assert hash_value("fn", "", US, warnings) is None
    assert warnings == []


def test_punctuation_only_name_is_invalid() -> None:
    """A name that normalizes to nothing is dropped with a warning, never hashed as ''."""
    warnings: list[str] = []
    assert hash_value("fn", "--", US, warnings) is None
    assert warnings == ["fn_invalid_dropped"]


def test_non_string_values_are_dropped_with_a_warning() -> None:
    """A value that is not a string (a hand-built record) is dropped, not crashed on."""
    warnings: list[str] = []
    assert hash_value("zp", 94035, US, warnings) is None
    assert warnings == ["zp_invalid_dropped"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ελένη", "ελένη"),
        ("हिन्दी", "हिन्दी"),
        ("Jean Paul", "jeanpaul"),
        ("  Anne-Marie  ", "annemarie"),
        ("D'Angelo", "dangelo"),
        ("Mary2", "mary2"),
    ],
)
def test_names_keep_letters_of_every_script(raw: str, expected: str) -> None:
    """fn keeps letters and combining marks of any script and drops spaces and punctuation."""
    assert NORMALIZERS["fn"](raw, US) == expected


def test_city_drops_digits() -> None:
    """ct removes digits too: 'Paris 75' → 'paris'."""
    assert NORMALIZERS["ct"]("Paris 75", US) == "paris"


@pytest.mark.parametrize(
    ("raw", "country", "region", "expected"),
    [
        ("New York", None, "US", "ny"),
        ("district of columbia", None, "US", "dc"),
        ("Québec", "ca", "US", "qc"),
        ("Quebec", "ca", "US", "qc"),
        ("British Columbia", "ca", "US", "bc"),
        ("Bayern", "de", "US", "bayern"),
        ("Nordrhein-Westfalen", "de", "US", "nordrheinwestfalen"),
        ("California", "de", "US", "california"),
        ("California", None, "DE", "california"),
        ("Calif.", "us", "US", "calif"),
    ],
)
def test_state_names_map_only_for_us_and_canada(
    raw: str, country: str | None, region: str, expected: str
) -> None:
    """st maps US/CA names to codes (event country, else default region); never truncates."""
    ctx = KeyContext(current_year=2026, default_region=region, country=country)
    assert NORMALIZERS["st"](raw, ctx) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("94035-1234", "94035"), ("940351234", "94035"), (" 94035 ", "94035"), ("9403", None)],
)
def test_us_zip_is_cut_to_five_digits(raw: str, expected: str | None) -> None:
    """With country us, zp keeps the first five digits; fewer than five is invalid."""
    ctx = KeyContext(current_year=2026, country="us")
    assert NORMALIZERS["zp"](raw, ctx) == expected


def test_zip_without_country_keeps_long_digit_runs() -> None:
    """Without an explicit us country, a 9-digit zip is not cut: the default region is a guess."""
    assert NORMALIZERS["zp"]("940351234", US) == "940351234"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("US", "us"),
        ("usa", "us"),
        ("U.S.A.", "us"),
        ("United States of America", "us"),
        ("DEU", "de"),
        ("Germany", "de"),
        ("UK", "gb"),
        ("United Kingdom", "gb"),
        ("Côte d'Ivoire", "ci"),
        ("Cote d'Ivoire", "ci"),
        ("South Korea", "kr"),
        ("Türkiye", "tr"),
        ("zz", None),
        ("Atlantis", None),
    ],
)
def test_country_names_and_codes_map_to_alpha_2(raw: str, expected: str | None) -> None:
    """country accepts alpha-2, alpha-3, names and a few aliases; anything else is dropped."""
    assert NORMALIZERS["country"](raw, US) == expected


def test_hashed_country_is_recognized() -> None:
    """The hash of a country code maps back to it, so pre-hashed events get the us zip rule."""
    assert country_of_hash(sha256_hex("us")) == "us"
    assert country_of_hash(HEX64) is None
    assert country_code("united states") == "us"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1997-02-16", "19970216"),
        ("1997/2/16", "19970216"),
        ("19970216", "19970216"),
        ("16021997", "19970216"),
        ("02161997", "19970216"),
        ("1997-02-16T00:00:00Z", "19970216"),
        ("2/16/1997", "19970216"),
        ("16.02.1997", "19970216"),
        ("16 Feb 1997", "19970216"),
        ("February 16th, 1997", "19970216"),
        ("1997 feb 16", "19970216"),
        ("2000-02-29", "20000229"),
        ("1900-01-01", "19000101"),
        ("2026-01-01", "20260101"),
        ("1999-02-29", None),
        ("1899-12-31", None),
        ("2027-01-01", None),
        ("2/16/97", None),
        ("yesterday", None),
        ("1997-13-45", None),
    ],
)
def test_dates_of_birth_in_many_orders(raw: str, expected: str | None) -> None:
    """db reads many orders into YYYYMMDD within 1900..current year (2026 here)."""
    assert NORMALIZERS["db"](raw, US) == expected


def test_ambiguous_date_follows_the_default_region() -> None:
    """'03/04/1997' is March 4th with region US and April 3rd with region FR."""
    assert NORMALIZERS["db"]("03/04/1997", US) == "19970304"
    france = KeyContext(current_year=2026, default_region="FR")
    assert NORMALIZERS["db"]("03/04/1997", france) == "19970403"


def test_the_current_year_comes_from_the_context() -> None:
    """The upper year bound is the context's current_year, never the machine clock."""
    assert parse_birth_date("2030-01-01", 2030) == "20300101"
    assert parse_birth_date("2030-01-01", 2029) is None


def test_huge_digit_runs_do_not_reach_int() -> None:
    """A 5,000-digit run is refused without tripping Python's int() digit limit."""
    assert NORMALIZERS["db"]("9" * 5000, US) is None
    assert NORMALIZERS["dobd"]("9" * 5000, US) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("F", "f"),
        ("woman", "f"),
        ("Mrs.", "f"),
        ("M", "m"),
        ("Male", "m"),
        ("man", "m"),
        ("non-binary", None),
        ("", None),
    ],
)
def test_gender_synonyms(raw: str, expected: str | None) -> None:
    """ge maps common synonyms to f/m and drops anything else."""
    assert NORMALIZERS["ge"](raw, US) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("442079460958", "US", "442079460958"),
        ("011 44 20 7946 0958", "US", "442079460958"),
        ("020 7946 0958", "GB", "442079460958"),
        ("+1 650 555 1212", "GB", "16505551212"),
        ("06 12 34 56 78", "FR", "33612345678"),
        ("+39 06 1234 5678", "US", "390612345678"),
        ("16505551212", "US", "16505551212"),
        ("", "US", None),
        ("+", "US", None),
        ("12", "US", None),
    ],
)
def test_phone_regions_and_international_forms(raw: str, region: str, expected: str | None) -> None:
    """ph: national numbers use the default region; '+', '00' and SDK-style digits go abroad."""
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    "region", ["US", "GB", "DE", "FR", "IN", "CA", "IT", "JP", "AU", "BR", "AR", "MX"]
)
def test_phone_fast_path_agrees_with_the_library(region: str) -> None:
    """For each region's example numbers in every format, the fast path equals full parsing."""
    for number_type in range(12):
        example = phonenumbers.example_number_for_type(region, number_type)
        if example is None:
            continue
        for number_format in range(4):
            text = phonenumbers.format_number(example, number_format)
            compact = _SEPARATORS.sub("", text)
            international = compact.startswith(("+", "00"))
            digits = compact[1:] if compact.startswith("+") else compact
            digits = digits[2:] if compact.startswith("00") else digits
            assert normalize_phone(text, region) == _slow(
                text.strip(), digits, international, region
            )


@pytest.mark.parametrize("default", ["US", "GB", "IN"])
def test_international_numbers_of_every_region_answer_like_the_library(default: str) -> None:
    """Every region's example numbers (each type), written +CC or 00CC and as bare digits,
    get the library's answer whatever the default region: the fast path checks them against
    their country code's main region, and defers when it is not sure."""
    fast = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in range(12):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            international = phonenumbers.format_number(
                example, phonenumbers.PhoneNumberFormat.INTERNATIONAL
            )
            for text in (e164, international, "00" + e164[1:]):
                compact = _SEPARATORS.sub("", text)
                digits = compact[1:] if compact.startswith("+") else compact[2:]
                expected = _slow(text, digits, True, default)
                assert normalize_phone.__wrapped__(text, default) == expected, (region, text)
                fast += _fast(digits, True, default) is not None
    assert fast > 500  # most of them took the fast path


def test_external_id_is_only_trimmed_and_lowercased() -> None:
    """external_id keeps its punctuation: ' User-123 ' hashes as 'user-123'."""
    assert hash_value("external_id", " User-123 ", US, []) == sha256_hex("user-123")


def test_legacy_name_keys_use_the_canonical_name_first() -> None:
    """f5first cuts the fn form: 'Mary-Jane' → 'maryj', not 'mary-'."""
    assert NORMALIZERS["f5first"]("Mary-Jane", US) == "maryj"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" USD ", "usd"), ("eur", "eur"), ("US$", None), ("XXX", None), ("", None)],
)
def test_currency_codes(raw: str, expected: str | None) -> None:
    """currency: three letters of ISO 4217, lowercase; non-money codes and others refused."""
    assert currency_code(raw) == expected


def test_key_context_day_first() -> None:
    """Only month-first regions (the US and a few others) read 03/04 as March 4th."""
    assert not US.day_first
    assert KeyContext(current_year=2026, default_region="GB").day_first
