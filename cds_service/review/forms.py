"""CSRF-protected forms (Flask-WTF)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

DISPOSITIONS = [
    ("appropriate", "Appropriate: no action needed"),
    ("follow-up", "Follow-up with prescriber needed"),
    ("documentation-gap", "Documentation gap (indication missing or unclear)"),
    ("policy-exception", "Covered by a policy exception"),
    ("not-applicable", "Alert not applicable"),
]


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=100)],
                           render_kw={"autocomplete": "username"})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)],
                             render_kw={"autocomplete": "current-password"})


class DispositionForm(FlaskForm):
    disposition = SelectField("Disposition", choices=[SelectChoice(v, label) for v, label in DISPOSITIONS],
                              validators=[DataRequired()])
    note = TextAreaField("Note", validators=[Length(max=4000)])


class LogoutForm(FlaskForm):
    pass
