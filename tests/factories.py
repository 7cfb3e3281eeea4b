"""Example events shaped like the project's schemas, for tests and benchmarks."""

from __future__ import annotations

from typing import Any

from stream import schemas


def empty_user_data() -> dict[str, Any]:
    """A raw ``user_data`` with every key absent, as fastavro decodes one."""
    fields = schemas.load("conversion_event")["fields"]
    user_data = next(f for f in fields if f["name"] == "user_data")["type"]
    # hashable keys are arrays (empty when absent); plain keys are nullable strings
    return {f["name"]: [] if isinstance(f["type"], dict) else None for f in user_data["fields"]}


def raw_event(**overrides: Any) -> dict[str, Any]:
    """A minimal valid website Purchase in the raw schema's shape (every field present)."""
    user_data = empty_user_data()
    user_data.update(
        em=[" John_Smith@Gmail.com "],
        ph=["+1 (650) 555-1212"],
        client_user_agent="Mozilla/5.0 (X11; Linux x86_64)",
        client_ip_address="203.0.113.7",
    )
    event: dict[str, Any] = {
        "event_name": "Purchase",
        "event_time": 1_767_225_600,
        "action_source": "website",
        "event_id": "order-100045",
        "event_source_url": "https://shop.example.com/checkout/thanks",
        "opt_out": None,
        "referrer_url": None,
        "user_data": user_data,
        "custom_data": custom_data(),
        "app_data": None,
        "original_event_data": None,
        "attribution_data": None,
        "data_processing_options": None,
        "data_processing_options_country": None,
        "data_processing_options_state": None,
        "customer_segmentation": None,
        "messaging_channel": None,
        "advanced_measurement_table": None,
        "advertiser_tracking_enabled": None,
        "pixel_id": "1234567890",
        "test_event_code": None,
    }
    event.update(overrides)
    return event


def custom_data(**overrides: Any) -> dict[str, Any]:
    """A ``custom_data`` record with value and currency and every other field empty."""
    data: dict[str, Any] = {
        "value": 123.45,
        "currency": "USD",
        "net_revenue": None,
        "content_name": None,
        "content_category": None,
        "content_ids": [],
        "contents": [],
        "content_type": None,
        "order_id": None,
        "predicted_ltv": None,
        "num_items": None,
        "search_string": None,
        "status": None,
        "delivery_category": None,
        "item_number": None,
        "custom_properties": {},
    }
    data.update(overrides)
    return data


def full_raw_event() -> dict[str, Any]:
    """A raw event with every field of the schema populated (for codec round trips)."""
    event = raw_event()
    event["user_data"].update(
        em=["a@example.com", "b@example.com"],
        fn=["Mary"], ln=["O'Brien"], db=["2/16/1997"], ge=["Female"], ct=["Washington D.C."],
        st=["California"], zp=["94035-1234"], country=["United States"], external_id=["user-123"],
        f5first="George", f5last="Washington", fi="A", dobd="1", dobm="2", doby="2000",
        fbc="fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQ", fbp="fb.1.1596403881668.1116446470",
        subscription_id="sub-1", fb_login_id="42", lead_id="77", anon_id="anon", madid="gaid",
        page_id="p1", page_scoped_user_id="psid", ctwa_clid="ctwa", ig_account_id="ig",
        ig_sid="igsid",
    )  # fmt: skip
    event.update(
        opt_out=False,
        referrer_url="https://ref.example.com/",
        custom_data=custom_data(
            net_revenue=12.5, content_name="Shoes", content_category="Footwear",
            content_ids=["sku-1"], content_type="product", order_id="100045", predicted_ltv=400.0,
            num_items=2, search_string="shoes", status="done", delivery_category="home_delivery",
            item_number="1",
            contents=[{"id": "sku-1", "quantity": 2, "item_price": 61.725,
                       "delivery_category": "home_delivery", "title": "Shoe",
                       "description": "A shoe",
                       "brand": "Acme", "category": "Footwear"}],
            custom_properties={"coupon": "XMAS", "first_order": True, "score": 3, "ratio": 0.5,
                               "none": None},
        ),
        app_data={
            "advertiser_tracking_enabled": True, "application_tracking_enabled": True,
            "extinfo": ["a2", "com.example", "1.0", "1.0.0", "14", "Pixel", "en_US", "UTC", "",
                        "1080", "1920", "2.0", "8", "128", "64", "Europe/Paris"],
            "campaign_ids": "c", "install_referrer": "r",
            "installer_package": "com.android.vending",
            "url_schemes": ["ex://"], "vendor_id": "v", "windows_attribution_id": "w",
        },
        original_event_data={"event_name": "Lead", "event_time": 1_767_000_000,
                             "order_id": "o", "event_id": "e"},
        attribution_data={"scope": "s", "visit_time": 1_767_000_000, "ad_id": "1", "adset_id": "2",
                          "campaign_id": "3", "attribution_share": 0.5,
                          "attribution_model": "last_click", "attr_window": 7,
                          "attribution_value": 10.0},
        data_processing_options=["LDU"],
        data_processing_options_country=0,
        data_processing_options_state=0,
        customer_segmentation="new_customer_to_business",
        messaging_channel="whatsapp",
        advanced_measurement_table="amt",
        advertiser_tracking_enabled=True,
        test_event_code="TEST123",
    )  # fmt: skip
    return event
