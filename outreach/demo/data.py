"""Synthetic, realistic shop data for the demo and benchmarks.

A tea shop with customers in China (zh_CN, +86, Asia/Shanghai) and elsewhere
(en, various time zones); retail, business and distributor customers whose
order sizes differ; revenue skewed so the top 20% bring most of it (80/20).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from outreach.errors import ConfigError

#: (sku, category, unit price CNY)
PRODUCTS = [
    ("LJ-100", "tea", 68.0),
    ("PE-357", "tea", 128.0),
    ("TGY-250", "tea", 88.0),
    ("DHP-200", "tea", 158.0),
    ("JAS-100", "tea", 45.0),
    ("YX-POT", "teaware", 368.0),
    ("CUP-SET", "teaware", 120.0),
    ("GAIWAN", "teaware", 95.0),
    ("MOON-CK", "snacks", 38.0),
]
CUSTOMER_TYPES = [("retail", 0.85), ("business", 0.10), ("distributor", 0.05)]
#: Basket multiplier by customer type: businesses and distributors buy in bulk.
BASKET = {"retail": 1.0, "business": 4.0, "distributor": 12.0}
WEST_ZONES = ["Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
              "Australia/Sydney", "Asia/Singapore"]


@dataclass(frozen=True)
class DemoFiles:
    customers: Path
    orders: Path
    consents: Path


def generate(directory: Path, *, customers: int, now: datetime, seed: int) -> DemoFiles:
    """Write customers.csv, orders.csv and consents.csv under ``directory``."""
    rng = random.Random(seed)
    try:
        from faker import Faker  # the `demo` extra, imported only when the demo runs
    except ImportError:
        raise ConfigError(
            "the demo makes up its shop with Faker, which is not installed: "
            "pip install 'outreach[demo]' (or pip install faker)"
        ) from None
    fake_cn, fake_en = Faker("zh_CN"), Faker("en_US")
    fake_cn.seed_instance(seed)
    fake_en.seed_instance(seed + 1)
    directory.mkdir(parents=True, exist_ok=True)
    files = DemoFiles(directory / "customers.csv", directory / "orders.csv", directory / "consents.csv")
    with (
        files.customers.open("w", newline="", encoding="utf-8") as cf,
        files.orders.open("w", newline="", encoding="utf-8") as of,
        files.consents.open("w", newline="", encoding="utf-8") as kf,
    ):
        cw, ow, kw = csv.writer(cf), csv.writer(of), csv.writer(kf)
        cw.writerow(["external_id", "name", "email", "phone", "birthday", "timezone", "locale",
                     "customer_type", "tags", "created_at", "city", "favourite_tea"])
        ow.writerow(["external_id", "customer_id", "ordered_at", "amount", "currency", "coupon_code", "items"])
        kw.writerow(["customer_id", "channel", "status", "source", "evidence", "recorded_at"])
        order_no = 0
        for n in range(1, customers + 1):
            ext = f"C{n:06d}"
            chinese = rng.random() < 0.6
            fake = fake_cn if chinese else fake_en
            kind = rng.choices([k for k, _ in CUSTOMER_TYPES], [w for _, w in CUSTOMER_TYPES])[0]
            signup = now - timedelta(days=rng.randint(30, 900), minutes=rng.randint(0, 1439))
            # Some birthdays fall today/tomorrow so the birthday rule has work to do.
            if rng.random() < 0.03:
                bday = date(rng.randint(1960, 2004), now.month, min(now.day, 28))
            else:
                bday = fake.date_of_birth(minimum_age=18, maximum_age=75)
            phone = (f"+86{rng.choice(['138','139','186','150'])}{rng.randint(10000000, 99999999)}"
                     if chinese else f"+1{rng.randint(201, 989)}{rng.randint(2000000, 9999999)}")
            tags = []
            if rng.random() < 0.15:
                tags.append("newsletter")
            if kind != "retail":
                tags.append("trade")
            cw.writerow([
                ext, fake.name(), f"{ext.lower()}@{fake.free_email_domain()}", phone, bday.isoformat(),
                "Asia/Shanghai" if chinese else rng.choice(WEST_ZONES),
                "zh_CN" if chinese else "en", kind, ";".join(tags), signup.isoformat(),
                fake.city(), rng.choice(["oolong", "green tea", "pu-erh", "jasmine"]),
            ])
            # Consent evidence: most agreed to email at checkout, fewer to SMS.
            if rng.random() < 0.85:
                kw.writerow([ext, "email", "granted", "checkout", "ticked 'email me offers' at checkout",
                             signup.isoformat()])
            if rng.random() < 0.45:
                kw.writerow([ext, "sms", "granted", "checkout", "ticked 'text me offers' at checkout",
                             signup.isoformat()])
            if rng.random() < 0.03:
                kw.writerow([ext, "email", "revoked", "preference-centre", "unticked email offers",
                             (signup + timedelta(days=10)).isoformat()])
            # Order history: a heavy-tailed number of orders (80/20), spread over time.
            count = min(40, int(rng.paretovariate(1.3)) - 1 + (1 if rng.random() < 0.7 else 0))
            last = signup
            for _ in range(count):
                last = last + timedelta(days=rng.expovariate(1 / 45), hours=rng.randint(0, 23))
                if last >= now:
                    break
                order_no += 1
                lines, total = [], 0.0
                for _ in range(rng.choice([1, 1, 1, 2, 3])):
                    sku, cat, price = rng.choice(PRODUCTS if rng.random() < 0.25 else PRODUCTS[:5])
                    qty = max(1, int(rng.random() * 3 * BASKET[kind]))
                    total += price * qty
                    lines.append(f"{sku}|{cat}|{qty}|{price * qty:.2f}")
                ow.writerow([f"O{order_no:08d}", ext, last.isoformat(), f"{total:.2f}", "CNY", "", ";".join(lines)])
    return files
