"""onebit.plugins: loading user plugin files and entry points."""


def test_a_plugin_that_exits_is_named(tmp_path, capsys):
    from onebit.cli import main

    plugin = tmp_path / "quits.py"
    plugin.write_text("raise SystemExit(0)\n")
    assert main(["--plugins", str(plugin), "methods"]) == 2
    assert "quits.py failed while loading (SystemExit" in capsys.readouterr().err
