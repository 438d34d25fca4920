"""Platform protocols: money strings, Alipay RSA2, WeChat Pay v3 signatures and AES-GCM, against the sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from sandbox.payments import SandboxPayments
from sandbox.payments import router as sandbox_router
from services.contribution.payments import alipay, wechatpay
from services.contribution.payments.keys import load_public_key
from services.contribution.payments.money import AmountInvalid, fen_to_display, fen_to_yuan, yuan_to_fen
from tests.conftest import KEYS
from tests.contribution.payments import independent as ind

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
APIV3 = (KEYS / "wechatpay-apiv3.key").read_bytes().strip()


class TestMoney:
    @pytest.mark.parametrize(("text", "fen"), [
        ("12.30", 1230), ("12.3", 1230), ("0.01", 1), ("5", 500), ("0", 0), ("123456.78", 12345678),
    ])
    def test_yuan_strings_parse_exactly(self, text: str, fen: int) -> None:
        assert yuan_to_fen(text) == fen

    @pytest.mark.parametrize("text", [
        "1.234", "-1.00", "+1.00", "1e3", "1E2", "01.00", "1.", ".5", " 1.00", "1.00 ", "１.00", "1_000", "",
        "NaN", "inf", "0x10", "1,000.00", "99999999999999.00",
    ])
    def test_anything_else_is_refused(self, text: str) -> None:
        with pytest.raises(AmountInvalid):
            yuan_to_fen(text)

    def test_fen_format(self) -> None:
        assert fen_to_yuan(1230) == "12.30"
        assert fen_to_yuan(5) == "0.05"
        assert fen_to_display(123456789) == "1,234,567.89"
        with pytest.raises(AmountInvalid):
            fen_to_yuan(-1)
        with pytest.raises(AmountInvalid):
            fen_to_yuan(1.5)  # type: ignore[arg-type]


def _alipay_platform_key() -> rsa.RSAPrivateKey:
    return ind.load_private(KEYS / "alipay-platform.pem")


class TestAlipayNotificationVerification:
    def fields(self, **over: str) -> dict[str, str]:
        base = {"app_id": "2021000100000001", "out_trade_no": "P1", "trade_no": "2026031022001", "trade_status": "TRADE_SUCCESS",
                "total_amount": "12.30", "seller_id": "2088000000000001"}
        base.update(over)
        return base

    def test_valid(self) -> None:
        signed = ind.alipay_notification(_alipay_platform_key(), **self.fields())
        n = alipay.verify_notification(signed, public_key=load_public_key((KEYS / "alipay-platform.pub.pem").read_bytes()))
        assert n.paid and n.out_trade_no == "P1" and yuan_to_fen(n.total_amount) == 1230

    def test_tampered_field(self) -> None:
        signed = ind.alipay_notification(_alipay_platform_key(), **self.fields())
        signed["total_amount"] = "0.01"
        with pytest.raises(alipay.NotificationRejected) as err:
            alipay.verify_notification(signed, public_key=load_public_key((KEYS / "alipay-platform.pub.pem").read_bytes()))
        assert err.value.reason == "signature"

    def test_added_field_breaks_signature(self) -> None:
        signed = ind.alipay_notification(_alipay_platform_key(), **self.fields())
        signed["refund_fee"] = "12.30"
        with pytest.raises(alipay.NotificationRejected):
            alipay.verify_notification(signed, public_key=load_public_key((KEYS / "alipay-platform.pub.pem").read_bytes()))

    def test_wrong_key(self) -> None:
        signed = ind.alipay_notification(ind.new_rsa_key(), **self.fields())
        with pytest.raises(alipay.NotificationRejected):
            alipay.verify_notification(signed, public_key=load_public_key((KEYS / "alipay-platform.pub.pem").read_bytes()))

    def test_sign_type_is_not_signed_but_must_be_rsa2(self) -> None:
        signed = ind.alipay_notification(_alipay_platform_key(), **self.fields())
        signed["sign_type"] = "RSA"
        with pytest.raises(alipay.NotificationRejected):
            alipay.verify_notification(signed, public_key=load_public_key((KEYS / "alipay-platform.pub.pem").read_bytes()))

    def test_unsigned_and_garbage_signature(self) -> None:
        pub = load_public_key((KEYS / "alipay-platform.pub.pem").read_bytes())
        with pytest.raises(alipay.NotificationRejected):
            alipay.verify_notification(self.fields(), public_key=pub)
        with pytest.raises(alipay.NotificationRejected):
            alipay.verify_notification({**self.fields(), "sign": "%%%not base64"}, public_key=pub)


def alipay_config(app_key: rsa.RSAPrivateKey | None = None) -> alipay.AlipayConfig:
    from services.contribution.payments.keys import load_private_key

    return alipay.AlipayConfig(
        gateway_url="http://sandbox/sandbox/alipay/gateway.do",
        app_id="2021000100000001",
        app_private_key=app_key or load_private_key((KEYS / "alipay-app.pem").read_bytes()),
        alipay_public_key=load_public_key((KEYS / "alipay-platform.pub.pem").read_bytes()),
        notify_url="http://contribution/contribution/v1/notify/alipay",
        seller_id="2088000000000001",
    )


class TestAlipayTradeCreate:
    def test_request_is_signed_by_the_published_rule(self) -> None:
        params = alipay.trade_create_params(
            alipay_config(), out_trade_no="P1", amount_fen=1230, subject="社会保险费", buyer_user_id="2088102146225135", now=NOW,
        )
        assert params["timestamp"] == "2026-03-10 10:00:00"  # Asia/Shanghai
        assert params["method"] == "alipay.trade.create" and params["sign_type"] == "RSA2" and params["version"] == "1.0"
        biz = json.loads(params["biz_content"])
        assert biz == {"out_trade_no": "P1", "total_amount": "12.30", "subject": "社会保险费", "product_code": "JSAPI_PAY",
                       "buyer_id": "2088102146225135", "seller_id": "2088000000000001"}
        pub = ind.load_public(KEYS / "alipay-app.pub.pem")
        assert ind.sha256_rsa_ok(pub, ind.alipay_request_content(params).encode(), params["sign"])

    def test_open_id_payer(self) -> None:
        params = alipay.trade_create_params(
            alipay_config(), out_trade_no="P1", amount_fen=1, subject="s", buyer_user_id="074a1CcTG1LelxKe4x", now=NOW,
        )
        assert json.loads(params["biz_content"])["buyer_open_id"] == "074a1CcTG1LelxKe4x"

    async def test_against_the_sandbox(self, sandbox: tuple[httpx.AsyncClient, SandboxPayments]) -> None:
        client, _ = sandbox
        created = await alipay.create_trade(
            alipay_config(), client, out_trade_no="P1", amount_fen=1230, subject="社会保险费", buyer_user_id="u1", now=NOW,
        )
        assert created.trade_no and created.out_trade_no == "P1"
        again = await alipay.create_trade(
            alipay_config(), client, out_trade_no="P1", amount_fen=1230, subject="社会保险费", buyer_user_id="u1", now=NOW,
        )
        assert again.trade_no == created.trade_no

    async def test_sandbox_refuses_a_request_signed_with_another_key(self, sandbox: tuple[httpx.AsyncClient, SandboxPayments]) -> None:
        client, _ = sandbox
        with pytest.raises(alipay.AlipayError) as err:
            await alipay.create_trade(
                alipay_config(ind.new_rsa_key()), client, out_trade_no="P1", amount_fen=1, subject="s", buyer_user_id="u1", now=NOW,
            )
        assert err.value.sub_code == "isv.invalid-signature"

    async def test_response_signed_by_another_key_is_not_trusted(self) -> None:
        node = '{"code":"10000","msg":"Success","out_trade_no":"P1","trade_no":"T1"}'
        sign = ind.sha256_rsa(ind.new_rsa_key(), node.encode())
        transport = httpx.MockTransport(lambda r: httpx.Response(200, text=f'{{"alipay_trade_create_response":{node},"sign":"{sign}"}}'))
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(alipay.AlipayError):
                await alipay.create_trade(alipay_config(), client, out_trade_no="P1", amount_fen=1, subject="s", buyer_user_id="u", now=NOW)

    async def test_response_node_is_found_as_a_top_level_key_only(self) -> None:
        node = '{"code":"10000","msg":"Success","out_trade_no":"P1","trade_no":"T2"}'
        sign = ind.sha256_rsa(_alipay_platform_key(), node.encode())
        decoy = json.dumps({"note": '"alipay_trade_create_response":{"code":"10000","trade_no":"FAKE"}'})
        text = f'{{"x": {decoy}, "alipay_trade_create_response":{node},"sign":"{sign}"}}'
        transport = httpx.MockTransport(lambda r: httpx.Response(200, text=text))
        async with httpx.AsyncClient(transport=transport) as client:
            created = await alipay.create_trade(alipay_config(), client, out_trade_no="P1", amount_fen=1, subject="s", buyer_user_id="u", now=NOW)
        assert created.trade_no == "T2"

    @pytest.mark.parametrize("text", ["", "[]", '{"a":1', '{"a" 1}', '{"alipay_trade_create_response":1}', "not json",
                                      '{"alipay_trade_create_response":{},"alipay_trade_create_response":{}}'])
    def test_malformed_responses_are_refused(self, text: str) -> None:
        with pytest.raises(alipay.AlipayError):
            alipay.response_node(text, "alipay_trade_create_response")

    async def test_response_node_is_verified_as_sent(self) -> None:
        # Whitespace inside the node is part of what Alipay signed.
        node = '{ "code": "10000", "msg": "Success", "out_trade_no": "P1", "trade_no": "T1" }'
        sign = ind.sha256_rsa(_alipay_platform_key(), node.encode())
        text = f'{{"alipay_trade_create_response": {node}, "sign": "{sign}"}}'
        transport = httpx.MockTransport(lambda r: httpx.Response(200, text=text))
        async with httpx.AsyncClient(transport=transport) as client:
            created = await alipay.create_trade(alipay_config(), client, out_trade_no="P1", amount_fen=1, subject="s", buyer_user_id="u", now=NOW)
        assert created.trade_no == "T1"


def wechat_config(platform_keys: dict[str, rsa.RSAPublicKey] | None = None, merchant_key: rsa.RSAPrivateKey | None = None) -> wechatpay.WechatPayConfig:
    from services.contribution.payments.keys import SANDBOX_PLATFORM_KEY_ID, load_private_key

    return wechatpay.WechatPayConfig(
        base_url="http://sandbox/sandbox/wechatpay",
        mchid="1900000001",
        appid="wx0000000000000001",
        merchant_key=merchant_key or load_private_key((KEYS / "wechatpay-merchant.pem").read_bytes()),
        merchant_serial="5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        platform_keys=platform_keys or {SANDBOX_PLATFORM_KEY_ID: load_public_key((KEYS / "wechatpay-platform.pub.pem").read_bytes())},
        apiv3_key=APIV3,
        notify_url="http://contribution/contribution/v1/notify/wechatpay",
    )


class TestWechatPaySigning:
    def test_authorization_header_follows_the_published_rule(self) -> None:
        key = ind.load_private(KEYS / "wechatpay-merchant.pem")
        header = wechatpay.authorization(
            method="POST", url_path="/v3/pay/transactions/jsapi", body='{"a":1}', mchid="1900000001",
            serial_no="SERIAL", key=key, timestamp=1773108000, nonce="N1",
        )
        assert header.startswith('WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="N1",signature="')
        fields = wechatpay.parse_authorization(header)
        assert fields["serial_no"] == "SERIAL" and fields["timestamp"] == "1773108000"
        message = b'POST\n/v3/pay/transactions/jsapi\n1773108000\nN1\n{"a":1}\n'
        assert ind.sha256_rsa_ok(ind.load_public(KEYS / "wechatpay-merchant.pub.pem"), message, fields["signature"])

    def test_mini_program_pay_sign(self) -> None:
        key = ind.load_private(KEYS / "wechatpay-merchant.pem")
        p = wechatpay.mini_program_params(appid="wx0000000000000001", prepay_id="wx201410272009395522657a690389285100", key=key, timestamp=1414561699)
        assert set(p) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
        assert p["package"] == "prepay_id=wx201410272009395522657a690389285100" and p["signType"] == "RSA"
        message = f"wx0000000000000001\n1414561699\n{p['nonceStr']}\n{p['package']}\n".encode()
        assert ind.sha256_rsa_ok(ind.load_public(KEYS / "wechatpay-merchant.pub.pem"), message, p["paySign"])


class TestWechatPayNotificationVerification:
    def signed(self, *, key: rsa.RSAPrivateKey | None = None, serial: str | None = None, ts: int | None = None,
               apiv3: bytes = APIV3, total: int = 1230) -> tuple[bytes, dict[str, str]]:
        from services.contribution.payments.keys import SANDBOX_PLATFORM_KEY_ID

        return ind.wechat_notification(
            platform_key=key or ind.load_private(KEYS / "wechatpay-platform.pem"),
            serial=serial or SANDBOX_PLATFORM_KEY_ID, apiv3_key=apiv3,
            transaction=ind.transaction(mchid="1900000001", appid="wx0000000000000001", out_trade_no="P1", total=total),
            timestamp=int(NOW.timestamp()) if ts is None else ts,
        )

    def test_valid_with_a_public_key_id(self) -> None:
        body, headers = self.signed()
        t = wechatpay.parse_notification(wechat_config(), headers=headers, body=body, now=int(NOW.timestamp()))
        assert t.paid and t.total_fen == 1230 and t.out_trade_no == "P1" and t.serial.startswith("PUB_KEY_ID_")

    def test_valid_with_a_platform_certificate_serial(self) -> None:
        key = ind.new_rsa_key()
        cert_pem, serial = ind.self_signed_cert(key)
        cfg = wechat_config({serial: load_public_key(cert_pem)})
        body, headers = self.signed(key=key, serial=serial)
        t = wechatpay.parse_notification(cfg, headers=headers, body=body, now=int(NOW.timestamp()))
        assert t.serial == serial and t.paid

    def test_tampered_body(self) -> None:
        body, headers = self.signed()
        tampered = body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESZ")
        with pytest.raises(wechatpay.NotificationRejected) as err:
            wechatpay.parse_notification(wechat_config(), headers=headers, body=tampered, now=int(NOW.timestamp()))
        assert err.value.reason == "signature"

    def test_wrong_key(self) -> None:
        body, headers = self.signed(key=ind.new_rsa_key())
        with pytest.raises(wechatpay.NotificationRejected):
            wechatpay.parse_notification(wechat_config(), headers=headers, body=body, now=int(NOW.timestamp()))

    def test_unknown_serial(self) -> None:
        body, headers = self.signed(serial="PUB_KEY_ID_0000000000000000000000000000000000")
        with pytest.raises(wechatpay.NotificationRejected) as err:
            wechatpay.parse_notification(wechat_config(), headers=headers, body=body, now=int(NOW.timestamp()))
        assert err.value.reason == "unknown_serial"

    @pytest.mark.parametrize("offset", [301, -301, 86400])
    def test_stale_timestamp(self, offset: int) -> None:
        body, headers = self.signed(ts=int(NOW.timestamp()) - offset)
        with pytest.raises(wechatpay.NotificationRejected) as err:
            wechatpay.parse_notification(wechat_config(), headers=headers, body=body, now=int(NOW.timestamp()))
        assert err.value.reason == "stale"

    def test_within_five_minutes(self) -> None:
        body, headers = self.signed(ts=int(NOW.timestamp()) - 299)
        assert wechatpay.parse_notification(wechat_config(), headers=headers, body=body, now=int(NOW.timestamp())).paid

    def test_resource_encrypted_with_another_key(self) -> None:
        body, headers = self.signed(apiv3=b"0" * 32)
        with pytest.raises(wechatpay.NotificationRejected) as err:
            wechatpay.parse_notification(wechat_config(), headers=headers, body=body, now=int(NOW.timestamp()))
        assert err.value.reason == "decrypt"

    def test_other_signature_type(self) -> None:
        body, headers = self.signed()
        headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SM2-WITH-SM3"
        with pytest.raises(wechatpay.NotificationRejected):
            wechatpay.parse_notification(wechat_config(), headers=headers, body=body, now=int(NOW.timestamp()))

    def test_signature_probe(self) -> None:
        body, headers = self.signed()
        headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
        with pytest.raises(wechatpay.NotificationRejected):
            wechatpay.parse_notification(wechat_config(), headers=headers, body=body, now=int(NOW.timestamp()))


class TestWechatPayPrepay:
    async def test_against_the_sandbox(self, sandbox: tuple[httpx.AsyncClient, SandboxPayments]) -> None:
        client, _ = sandbox
        prepay = await wechatpay.jsapi_prepay(
            wechat_config(), client, out_trade_no="P1", amount_fen=1230, description="社会保险费", openid="o1", now=int(NOW.timestamp()),
        )
        assert prepay.startswith("wx")

    async def test_sandbox_refuses_a_request_signed_with_another_key(self, sandbox: tuple[httpx.AsyncClient, SandboxPayments]) -> None:
        client, _ = sandbox
        with pytest.raises(wechatpay.WechatPayError) as err:
            await wechatpay.jsapi_prepay(
                wechat_config(merchant_key=ind.new_rsa_key()), client, out_trade_no="P1", amount_fen=1, description="d",
                openid="o1", now=int(NOW.timestamp()),
            )
        assert "401" in str(err.value)

    async def test_answer_signed_by_an_unknown_key_is_not_trusted(self, sandbox: tuple[httpx.AsyncClient, SandboxPayments]) -> None:
        client, _ = sandbox
        with pytest.raises(wechatpay.WechatPayError):
            await wechatpay.jsapi_prepay(
                wechat_config({"PUB_KEY_ID_OTHER": ind.new_rsa_key().public_key()}), client, out_trade_no="P1",
                amount_fen=1, description="d", openid="o1", now=int(NOW.timestamp()),
            )


@pytest.fixture
async def sandbox() -> tuple[httpx.AsyncClient, SandboxPayments]:
    app = FastAPI()
    app.include_router(sandbox_router)
    st = SandboxPayments(keys_dir=Path(KEYS), retry_seconds=0.001, now=lambda: NOW.timestamp())
    app.state.sandbox_payments = st
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as client:
        yield client, st
