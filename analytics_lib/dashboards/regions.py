"""Countries grouped into the sales regions the executive dashboard charts (bars, not a map:
plotly's geo maps fetch their shapes from a CDN, and dashboards must work with no network)."""

from __future__ import annotations

import pandas as pd

_REGIONS = {
    "North America": "US CA BM GL PM",
    "Latin America": (
        "MX GT BZ SV HN NI CR PA CU DO HT JM BS BB TT AG DM GD KN LC VC PR VI VG AI AW CW SX BQ KY TC MS "
        "MF BL GP MQ CO VE EC PE BO BR PY UY AR CL GY SR GF FK"),
    "Europe": (
        "GB IE FR DE NL BE LU CH AT IT ES PT DK SE NO FI IS EE LV LT PL CZ SK HU SI HR BA RS ME MK AL XK "
        "GR BG RO MD UA BY RU MT CY LI MC SM VA AD GI FO IM JE GG AX SJ EU TR"),
    "Middle East & Africa": (
        "AE SA QA KW BH OM YE IL PS JO LB SY IQ IR EG LY TN DZ MA EH MR ML NE TD SD SS ER ET DJ SO KE UG "
        "RW BI TZ MZ MW ZM ZW BW NA ZA LS SZ AO CD CG GA GQ CM CF NG BJ TG GH CI LR SL GN GW SN GM CV ST "
        "MG MU SC KM RE YT BF SH"),
    "Asia-Pacific": (
        "CN HK MO TW JP KR KP MN IN PK BD LK NP BT MV AF KZ UZ TM KG TJ AZ AM GE TH VN LA KH MM MY SG ID "
        "BN PH TL AU NZ PG FJ SB VU NC PF WS TO KI TV NR FM MH PW GU MP AS CK NU TK WF CX CC NF"),
}
REGION_OF: dict[str, str] = {code: region for region, codes in _REGIONS.items() for code in codes.split()}
REGIONS = (*_REGIONS, "Other")


def region(country_code: str | None) -> str:
    """The region of an ISO 3166-1 alpha-2 code (``Other`` when unknown or missing)."""
    if not isinstance(country_code, str):
        return "Other"
    return REGION_OF.get(country_code.upper(), "Other")


def by_region(countries: pd.DataFrame, code: str = "country_code",
              values: tuple[str, ...] = ("revenue",)) -> pd.DataFrame:
    """Sum ``values`` of a per-country table by region, largest first (regions with no rows
    are left out)."""
    if countries is None or countries.empty:
        return pd.DataFrame({"region": pd.Series(dtype=str), **{v: pd.Series(dtype=float) for v in values}})
    frame = countries.assign(region=[region(c) for c in countries[code]])
    present = [v for v in values if v in frame]
    out = frame.groupby("region", as_index=False)[present].sum()
    return out.sort_values(present[0] if present else "region", ascending=False).reset_index(drop=True)
