"""Account settings: PutAccountSetting, PutAccountSettingDefault, ListAccountSettings (with
effectiveSettings), DeleteAccountSetting."""

import pytest

from harness import expect_error

ALICE = "arn:aws:iam::000000000000:user/alice"
BOB = "arn:aws:iam::000000000000:role/bob"


def values(settings, name):
    return [(s["name"], s["value"]) for s in settings if s["name"] == name]


def test_cli_put_list_delete(gantry):
    out = gantry.aws_ok("ecs", "put-account-setting", "--name", "containerInsights",
                        "--value", "enabled")
    s = out["setting"]
    assert (s["name"], s["value"]) == ("containerInsights", "enabled")
    assert s["principalArn"].startswith("arn:aws:iam::000000000000:"), s
    out = gantry.aws_ok("ecs", "list-account-settings", "--name", "containerInsights")
    assert values(out["settings"], "containerInsights") == [("containerInsights", "enabled")]
    out = gantry.aws_ok("ecs", "delete-account-setting", "--name", "containerInsights")
    assert out["setting"]["name"] == "containerInsights"
    out = gantry.aws_ok("ecs", "list-account-settings", "--name", "containerInsights")
    assert out["settings"] == []


def test_effective_settings_fall_back_to_defaults(gantry, ecs):
    # Nothing set: the effective value is AWS's default.
    eff = ecs.list_account_settings(name="containerInsights", effectiveSettings=True)["settings"]
    assert values(eff, "containerInsights") == [("containerInsights", "disabled")]

    # An account default applies to every principal without its own setting.
    d = ecs.put_account_setting_default(name="containerInsights", value="enabled")["setting"]
    assert (d["name"], d["value"]) == ("containerInsights", "enabled")
    for principal in (ALICE, BOB):
        eff = ecs.list_account_settings(name="containerInsights", principalArn=principal,
                                        effectiveSettings=True)["settings"]
        assert values(eff, "containerInsights") == [("containerInsights", "enabled")], principal

    # A principal's own setting wins over the default, for that principal only.
    s = ecs.put_account_setting(name="containerInsights", value="disabled",
                                principalArn=ALICE)["setting"]
    assert s["principalArn"] == ALICE
    eff = ecs.list_account_settings(name="containerInsights", principalArn=ALICE,
                                    effectiveSettings=True)["settings"]
    assert values(eff, "containerInsights") == [("containerInsights", "disabled")]
    eff = ecs.list_account_settings(name="containerInsights", principalArn=BOB,
                                    effectiveSettings=True)["settings"]
    assert values(eff, "containerInsights") == [("containerInsights", "enabled")]

    # Without effectiveSettings only explicit settings for that principal are listed.
    own = ecs.list_account_settings(principalArn=ALICE)["settings"]
    assert values(own, "containerInsights") == [("containerInsights", "disabled")]
    assert ecs.list_account_settings(principalArn=BOB)["settings"] == []

    # Deleting the principal's setting brings back the default.
    deleted = ecs.delete_account_setting(name="containerInsights", principalArn=ALICE)["setting"]
    assert deleted["principalArn"] == ALICE
    eff = ecs.list_account_settings(name="containerInsights", principalArn=ALICE,
                                    effectiveSettings=True)["settings"]
    assert values(eff, "containerInsights") == [("containerInsights", "enabled")]


def test_cli_put_account_setting_default(gantry, ecs):
    out = gantry.aws_ok("ecs", "put-account-setting-default", "--name", "awsvpcTrunking",
                        "--value", "enabled")
    assert (out["setting"]["name"], out["setting"]["value"]) == ("awsvpcTrunking", "enabled")
    eff = ecs.list_account_settings(name="awsvpcTrunking", principalArn=ALICE,
                                    effectiveSettings=True)["settings"]
    assert values(eff, "awsvpcTrunking") == [("awsvpcTrunking", "enabled")]


def test_effective_settings_cover_every_setting(ecs):
    # ListAccountSettings pages hold at most 10 settings: follow nextToken.
    eff = [s for page in ecs.get_paginator("list_account_settings").paginate(
        effectiveSettings=True) for s in page["settings"]]
    names = {s["name"] for s in eff}
    assert {"serviceLongArnFormat", "taskLongArnFormat", "containerInstanceLongArnFormat",
            "awsvpcTrunking", "containerInsights"} <= names, names
    long_arns = dict(values(eff, "serviceLongArnFormat"))
    assert long_arns == {"serviceLongArnFormat": "enabled"}


def test_filter_by_value(ecs):
    ecs.put_account_setting(name="containerInsights", value="enabled", principalArn=ALICE)
    ecs.put_account_setting(name="awsvpcTrunking", value="enabled", principalArn=ALICE)
    out = ecs.list_account_settings(name="containerInsights", value="enabled",
                                    principalArn=ALICE)["settings"]
    assert [(s["name"], s["value"]) for s in out] == [("containerInsights", "enabled")]
    out = ecs.list_account_settings(name="containerInsights", value="disabled",
                                    principalArn=ALICE)["settings"]
    assert out == []


def test_setting_types_and_values(ecs):
    # containerInsights also takes "enhanced"; fargateTaskRetirementWaitPeriod takes 0/7/14.
    s = ecs.put_account_setting(name="containerInsights", value="enhanced")["setting"]
    assert s["value"] == "enhanced"
    s = ecs.put_account_setting_default(name="fargateTaskRetirementWaitPeriod",
                                        value="14")["setting"]
    assert s["value"] == "14"


@pytest.mark.parametrize("value", ["ENABLED", "on", "", "maybe"])
def test_invalid_value(ecs, value):
    expect_error(lambda: ecs.put_account_setting(name="containerInsights", value=value),
                 "InvalidParameterException", "Invalid setting 'value'")


def test_invalid_value_for_default(ecs):
    expect_error(lambda: ecs.put_account_setting_default(name="awsvpcTrunking", value="yes"),
                 "InvalidParameterException", "Invalid setting 'value'")
    expect_error(lambda: ecs.put_account_setting_default(
        name="fargateTaskRetirementWaitPeriod", value="3"), "InvalidParameterException")


def test_invalid_name(ecs):
    expect_error(lambda: ecs.put_account_setting(name="notASetting", value="enabled"),
                 "InvalidParameterException")
    expect_error(lambda: ecs.list_account_settings(name="notASetting"),
                 "InvalidParameterException")
