"""load_config: a real TOML file in, a typed Config or an error that names key, file and fix."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest

from edge.config import (CAMERA_ID, Config, ConfigError, Range, Zone, default_camera_id, field_check, load_config,
                         zones_path)
from edge.runtimes import RUNTIMES


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert str(path) in msg, f"the error must name the file: {msg}"
    return msg


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # a nested table such as mqtt.tls, inline
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def test_empty_file_gives_valid_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg == Config()
    assert cfg.model.runtime == "auto" and cfg.source.kind == "picamera2"
    assert cfg.zones == {}


def test_every_default_written_out_loads_back_equal(tmp_path: Path) -> None:
    """All defaults pass validation, and every declared key is accepted by the loader."""
    lines = [f'zones_file = {toml_value(Config().zones_file)}']  # top-level keys come before tables
    for section in dataclasses.fields(Config):
        if section.name in ("zones", "zones_file"):
            continue
        lines.append(f"[{section.name}]")
        for key, value in dataclasses.asdict(getattr(Config(), section.name)).items():
            lines.append(f"{key} = {toml_value(value)}")
    assert load_config(write(tmp_path, "\n".join(lines) + "\n")) == Config()


def test_values_are_typed_and_zones_parsed(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
[model]
runtime = "tflite-runtime"
[source]
kind = "video"
path = "/tmp/v.avi"
fps = 30          # an integer where a number is wanted is fine
[processing]
width = 320
height = 240
crop = [0, 0, 320, 240]
scales = [1, 0.5]
[zones.driveway]
x = 10
y = 20
width = 100
height = 50
"""))
    assert cfg.model.runtime == "tflite-runtime"
    assert cfg.source.fps == 30.0 and isinstance(cfg.source.fps, float)
    assert cfg.processing.scales == [1.0, 0.5] and all(isinstance(s, float) for s in cfg.processing.scales)
    assert cfg.zones == {"driveway": Zone(10, 20, 100, 50)}


def test_unknown_key_in_section_is_named_with_allowed_keys(tmp_path: Path) -> None:
    msg = error(tmp_path, '[source]\nkindd = "video"\n')
    assert "source.kindd" in msg
    assert "kind" in msg and "fps" in msg  # the allowed keys are listed


def test_unknown_section_is_named(tmp_path: Path) -> None:
    msg = error(tmp_path, "[modle]\npath = 'x'\n")
    assert "modle" in msg and "model" in msg


def test_bad_literal_lists_allowed_values(tmp_path: Path) -> None:
    msg = error(tmp_path, '[model]\nruntime = "gpu"\n')
    assert "model.runtime" in msg and "'gpu'" in msg
    for allowed in ("auto", *RUNTIMES):  # the registry owns the names
        assert f"'{allowed}'" in msg


def test_wrong_type_names_key_and_expected_type(tmp_path: Path) -> None:
    msg = error(tmp_path, '[source]\nfps = "fast"\n')
    assert "source.fps" in msg and "number" in msg and "'fast'" in msg
    msg = error(tmp_path, "[source]\nwidth = 320.5\n")
    assert "source.width" in msg and "integer" in msg
    msg = error(tmp_path, "[http]\nenabled = 1\n")
    assert "http.enabled" in msg and "true or false" in msg
    msg = error(tmp_path, '[processing]\nscales = [1.0, "big"]\n')
    assert "processing.scales[1]" in msg


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    msg = error(tmp_path, "model = 3\n")
    assert "[model]" in msg and "table" in msg


def test_zone_outside_processing_frame(tmp_path: Path) -> None:
    msg = error(tmp_path, """
[processing]
width = 320
height = 240
[zones.door]
x = 300
y = 0
width = 40
height = 40
""")
    assert "zones.door" in msg and "320x240" in msg and "processing frame" in msg


def test_zone_must_have_all_keys(tmp_path: Path) -> None:
    msg = error(tmp_path, "[zones.door]\nx = 0\ny = 0\nwidth = 10\n")
    assert "zones.door.height" in msg


def test_zone_named_frame_is_reserved(tmp_path: Path) -> None:
    msg = error(tmp_path, "[zones.frame]\nx = 0\ny = 0\nwidth = 10\nheight = 10\n")
    assert "zones.frame" in msg and "reserved" in msg


def test_crop_outside_source(tmp_path: Path) -> None:
    msg = error(tmp_path, """
[source]
width = 320
height = 240
[processing]
crop = [200, 0, 200, 100]
""")
    assert "processing.crop" in msg and "320x240 source frame" in msg
    msg = error(tmp_path, "[processing]\ncrop = [0, 0, 100]\n")
    assert "processing.crop" in msg and "[x, y, width, height]" in msg


def test_missing_file_names_path_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "config.toml"
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert str(path) in msg and "does not exist" in msg and "--config" in msg


def test_invalid_toml_names_path_and_position(tmp_path: Path) -> None:
    msg = error(tmp_path, "[model]\nruntime = auto\n")  # unquoted string
    assert "not valid TOML" in msg
    assert re.search(r"line 2", msg), msg


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[model]\nruntime = \"litert\"\n")
    assert load_config(path).model.runtime == "litert"


def test_video_kind_needs_a_path(tmp_path: Path) -> None:
    msg = error(tmp_path, '[source]\nkind = "video"\n')
    assert "source.path" in msg and "'video'" in msg
    msg = error(tmp_path, '[source]\nkind = "images"\npath = ""\n')
    assert "source.path" in msg


@pytest.mark.parametrize("text,key", [
    ("[motion]\nmax_skip_s = 0\n", "motion.max_skip_s"),
    ("[capture]\nmax_bytes = 0\n", "capture.max_bytes"),
    ("[capture]\nmax_files = 10\n", "capture.max_bytes"),
    ("[source]\ncapture_timeout_s = 0\n", "source.capture_timeout_s"),
    ("[mqtt]\nkeepalive_s = 0\n", "mqtt.keepalive_s"),
    ("[source]\nfps = 0\n", "source.fps"),
    ("[processing]\nscales = []\n", "processing.scales"),
    ("[capture]\nuncertain_margin = 1.5\n", "capture.uncertain_margin"),
    ("[capture]\nuncertain_low = 0.3\n", "capture.uncertain_margin"),
    ("[decide]\nframes_in = 0\n", "decide.frames_in"),
])
def test_out_of_range_values_are_named(tmp_path: Path, text: str, key: str) -> None:
    assert key in error(tmp_path, text)


ZONE_OK = {"x": 0, "y": 0, "width": 10, "height": 10}


def declared_fields() -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(section, field, type) for every key of every section, [zones.<name>] included."""
    hints = get_type_hints(Config)
    for section in dataclasses.fields(Config):
        cls = hints[section.name]
        if get_origin(cls) is dict:
            cls = get_args(cls)[1]
        if not dataclasses.is_dataclass(cls):
            continue  # a top-level key (zones_file), not a section
        cls_hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield section.name, f, cls_hints[f.name]


def ranged_fields() -> list[tuple[str, dataclasses.Field, Any, Range]]:
    return [(s, f, tp, c) for s, f, tp in declared_fields() if isinstance(c := field_check(f), Range)]


def outside(rng: Range, tp: Any) -> list[float]:
    """Values just past each bound the range declares."""
    step = 1 if tp is int else 0.05
    vals = []
    if rng.ge is not None:
        vals.append(rng.ge - step)
    if rng.gt is not None:
        vals.append(rng.gt)
    if rng.le is not None:
        vals.append(rng.le + step)
    if rng.lt is not None:
        vals.append(rng.lt)
    return [tp(v) for v in vals]


def section_text(section: str, key: str, value: object) -> str:
    if section == "zones":
        body = {**ZONE_OK, key: value}
        return "[zones.z]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in body.items())
    return f"[{section}]\n{key} = {toml_value(value)}\n"


def test_every_number_field_declares_its_range() -> None:
    """A key added without a range next to it would accept nonsense silently."""
    unranged = [f"{s}.{f.name}" for s, f, tp in declared_fields() if tp in (int, float) and field_check(f) is None]
    assert not unranged, f"declare a Range next to these fields: {unranged}"


@pytest.mark.parametrize("section,f,tp,rng", ranged_fields(), ids=lambda v: getattr(v, "name", None))
def test_every_declared_range_is_enforced_and_named(tmp_path: Path, section: str, f: dataclasses.Field,
                                                    tp: Any, rng: Range) -> None:
    key = f"{section}.z.{f.name}" if section == "zones" else f"{section}.{f.name}"
    for value in outside(rng, tp):
        msg = error(tmp_path, section_text(section, f.name, value))
        assert f"{key} must be {rng.bounds()}" in msg and f"got {value!r}" in msg, msg
    for bound in (rng.ge, rng.le):  # inclusive bounds are accepted
        if bound is not None:
            assert rng(tp(bound)) is None


def test_range_wording() -> None:
    assert Range(ge=1).describe() == "must be >= 1"
    assert Range(gt=0.0, le=1.0).describe() == "must be in (0, 1]"
    assert Range(ge=0.1, le=4.0).bounds() == "in [0.1, 4]"
    assert Range(lt=1.0, hint="negative = default").describe() == "must be < 1 (negative = default)"
    assert Range(ge=0, le=65535)(70000) == "must be in [0, 65535], got 70000"


@pytest.mark.parametrize("text,key", [
    ("[processing]\nscales = [1.0, 5.0]\n", "processing.scales"),
    ("[processing]\ncrop = [-1, 0, 10, 10]\n", "processing.crop"),
    ("[source]\nretry_initial_s = 5.0\nretry_max_s = 1.0\n", "source.retry_max_s"),
    ("[mqtt]\nport = 0\n", "mqtt.port"),
])
def test_validators_and_cross_field_checks_are_named(tmp_path: Path, text: str, key: str) -> None:
    assert key in error(tmp_path, text)


def test_tomli_fallback_is_a_declared_dependency() -> None:
    """edge/config.py imports tomli below Python 3.11; pip must install it there."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    deps = [d.replace(" ", "").replace('"', "'") for d in pyproject["project"]["dependencies"]]
    assert any(d.startswith("tomli") and d.endswith(";python_version<'3.11'") for d in deps), deps


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.20", "pi.local"])
def test_a_non_loopback_http_host_needs_a_token(tmp_path: Path, host: str) -> None:
    msg = error(tmp_path, f'[http]\nhost = "{host}"\n')
    assert msg.split(": ", 1)[1].startswith("http.token must be set") and repr(host) in msg
    token = "0123456789abcdef0123"
    cfg = load_config(write(tmp_path, f'[http]\nhost = "{host}"\ntoken = "{token}"\n'))
    assert cfg.http.token == token


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_http_hosts_need_no_token(tmp_path: Path, host: str) -> None:
    assert load_config(write(tmp_path, f'[http]\nhost = "{host}"\n')).http.token == ""


@pytest.mark.parametrize("value", ['"hunter2hunter"', "123456789012345678"])
def test_http_token_errors_never_show_the_token(tmp_path: Path, value: str) -> None:
    msg = error(tmp_path, f'[http]\nhost = "0.0.0.0"\ntoken = {value}\n')
    assert "http.token" in msg and value.strip('"') not in msg


def test_http_token_is_left_out_of_the_config_repr(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[http]\nhost = "0.0.0.0"\ntoken = "0123456789abcdef-secret"\n'))
    assert "secret" not in repr(cfg) and "secret" not in repr(cfg.http)


def test_removed_snapshot_stream_key_is_refused(tmp_path: Path) -> None:
    """It promised colour snapshots that nothing served; an old config is told, not ignored."""
    msg = error(tmp_path, "[source]\nsnapshot_stream = true\n")
    assert "unknown key source.snapshot_stream" in msg


@pytest.mark.parametrize("value", ["123456789", "[\"hunter2\"]", "{ pw = \"hunter2\" }", "12345.678"])
def test_mqtt_password_errors_never_show_the_password(tmp_path: Path, value: str) -> None:
    """A password typed without quotes is still the password: the error must not print it."""
    msg = error(tmp_path, f"[mqtt]\npassword = {value}\n")
    assert "mqtt.password must be a string" in msg
    for secret in ("123456789", "hunter2", "12345.678"):
        assert secret not in msg, msg


def test_mqtt_password_is_left_out_of_the_config_repr(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[mqtt]\nusername = "u"\npassword = "hunter2-secret"\n'))
    assert cfg.mqtt.password == "hunter2-secret"
    assert "hunter2" not in repr(cfg) and "hunter2" not in repr(cfg.mqtt)


def test_mqtt_tls_files_are_checked_at_load(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = load_config(write(tmp_path, f'[mqtt.tls]\nenabled = true\nca_file = "{pem}"\n'))
    assert cfg.mqtt.tls.enabled and cfg.mqtt.tls.ca_file == str(pem) and not cfg.mqtt.tls.insecure
    missing = tmp_path / "nope.pem"
    msg = error(tmp_path, f'[mqtt.tls]\nenabled = true\nca_file = "{missing}"\n')
    assert f"mqtt.tls.ca_file = '{missing}' cannot be read (No such file or directory)" in msg
    msg = error(tmp_path, f'[mqtt.tls]\nenabled = true\ncert_file = "{tmp_path}"\n')
    assert "mqtt.tls.cert_file" in msg and "is a directory" in msg
    msg = error(tmp_path, '[mqtt.tls]\nenabled = true\nca_file = "certs/ca.pem"\n')
    assert "mqtt.tls.ca_file" in msg and "absolute path" in msg


def test_mqtt_tls_key_without_certificate_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("x")
    msg = error(tmp_path, f'[mqtt.tls]\nenabled = true\nkey_file = "{key}"\n')
    assert "mqtt.tls.key_file needs mqtt.tls.cert_file" in msg


@pytest.mark.parametrize("key,value", [("ca_file", "CA"), ("insecure", "true")])
def test_mqtt_tls_settings_without_tls_enabled_are_refused(tmp_path: Path, key: str, value: str) -> None:
    """A CA file with enabled = false would silently send the password in clear."""
    pem = tmp_path / "ca.pem"
    pem.write_text("x")
    text = f'"{pem}"' if value == "CA" else value
    msg = error(tmp_path, f"[mqtt.tls]\n{key} = {text}\n")
    assert f"mqtt.tls.{key} is set but mqtt.tls.enabled = false" in msg


def test_camera_id_defaults_to_the_host_name(tmp_path: Path) -> None:
    import socket

    cfg = load_config(write(tmp_path, ""))
    assert cfg.camera.id == default_camera_id()
    assert CAMERA_ID.fullmatch(cfg.camera.id)
    if CAMERA_ID.fullmatch(socket.gethostname()):
        assert cfg.camera.id == socket.gethostname()
    assert load_config(write(tmp_path, '[camera]\nid = "drive-way_2"\n')).camera.id == "drive-way_2"


@pytest.mark.parametrize("value", ['""', '"drive way"', '"cams/1"', '"cam+"', '"#"', '"-lead"', '"é"',
                                   f'"{"x" * 64}"', "3"])
def test_a_camera_id_that_cannot_name_topics_or_labels_is_refused(tmp_path: Path, value: str) -> None:
    assert "camera.id" in error(tmp_path, f"[camera]\nid = {value}\n")


def test_the_old_mqtt_client_id_says_what_replaced_it(tmp_path: Path) -> None:
    msg = error(tmp_path, '[mqtt]\nclient_id = "garage"\n')
    assert "mqtt.client_id is no longer a setting" in msg and "[camera] id" in msg


def test_polygon_zone_gets_its_bounding_box_and_shape(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[zones.drive]\npoints = [[10, 200], [100, 80], [160, 80], [120, 230]]\n"))
    z = cfg.zones["drive"]
    assert (z.x, z.y, z.width, z.height) == (10, 80, 150, 150)
    assert z.shape() == ((10, 200), (100, 80), (160, 80), (120, 230))
    assert Zone(1, 2, 3, 4).shape() == (1, 2, 3, 4)


@pytest.mark.parametrize("body,words", [
    ("points = [[0, 0], [10, 0]]", ["zones.z.points", "at least 3"]),
    ("points = [[0, 0], [10, 0], [20, 0]]", ["zones.z.points", "no area"]),
    ("points = [[0, 0], [10, 10], [10, 0], [0, 10]]", ["zones.z.points", "cross"]),
    ("points = [[0, 0], [10, -1], [0, 10]]", ["zones.z.points", "x, y >= 0"]),
    ("points = [[0, 0, 1], [10, 0], [0, 10]]", ["zones.z.points"]),
    ("points = [[0, 0], [10, 0], [0, 10]]\nwidth = 5", ["zones.z", "both points and"]),
    ("points = [[0, 0], [400, 0], [0, 10]]", ["zones.z", "processing frame"]),
    ("x = 0\ny = 0\nheight = 10", ["zones.z.width", "required"]),
])
def test_bad_polygon_zones_are_named(tmp_path: Path, body: str, words: list[str]) -> None:
    msg = error(tmp_path, f"[zones.z]\n{body}\n")
    assert all(w in msg for w in words), msg


def test_zones_file_is_included_and_its_errors_name_it(tmp_path: Path) -> None:
    (tmp_path / "zones.toml").write_text("[zones.gate]\nx = 0\ny = 0\nwidth = 10\nheight = 10\n")
    cfg = load_config(write(tmp_path, 'zones_file = "zones.toml"\n[decide]\nframes_in = 2\n'))
    assert cfg.zones == {"gate": Zone(0, 0, 10, 10)} and cfg.decide.frames_in == 2
    assert zones_path(tmp_path / "config.toml", cfg) == tmp_path / "zones.toml"

    (tmp_path / "zones.toml").write_text("[zones.gate]\nx = 0\ny = 0\nwidth = 0\nheight = 10\n")
    msg = error(tmp_path, 'zones_file = "zones.toml"\n')
    assert msg.startswith(str(tmp_path / "zones.toml")) and "zones.gate.width" in msg
    (tmp_path / "zones.toml").write_text("[decide]\nframes_in = 1\n")
    assert "only [zones.<name>] tables" in error(tmp_path, 'zones_file = "zones.toml"\n')
    (tmp_path / "zones.toml").write_text("[zones.gate\n")
    assert "not valid TOML" in error(tmp_path, 'zones_file = "zones.toml"\n')


def test_zones_file_missing_means_no_zones_yet_and_zones_in_both_places_is_refused(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, 'zones_file = "zones.toml"\n')).zones == {}
    msg = error(tmp_path, 'zones_file = "zones.toml"\n[zones.a]\nx = 0\ny = 0\nwidth = 5\nheight = 5\n')
    assert "zones_file" in msg and "one place" in msg
