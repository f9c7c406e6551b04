import typer
from typer.testing import CliRunner

from shared.cli import handle_user_errors, new_app
from shared.errors import DataError, InputFileError, SchemaError, UserError


def _app() -> typer.Typer:
    app = new_app("t", "test app")

    @app.command()
    @handle_user_errors
    def boom(kind: str = "user") -> None:
        if kind == "user":
            raise InputFileError("file not found: x.csv")
        if kind == "bug":
            raise RuntimeError("a real bug")
        typer.echo("fine")

    @app.command()
    def other() -> None:
        typer.echo("other")

    return app


def test_user_error_is_one_line_and_exit_2():
    result = CliRunner().invoke(_app(), ["boom"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: file not found: x.csv"
    assert "Traceback" not in result.output


def test_bug_keeps_its_exception():
    result = CliRunner().invoke(_app(), ["boom", "--kind", "bug"])
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)


def test_success_path_untouched():
    result = CliRunner().invoke(_app(), ["boom", "--kind", "ok"])
    assert result.exit_code == 0 and result.output.strip() == "fine"


def test_error_hierarchy():
    assert issubclass(SchemaError, DataError) and issubclass(DataError, UserError)
    assert str(SchemaError("missing column 'x'")) == "missing column 'x'"
    assert UserError("m").exit_code == 2
