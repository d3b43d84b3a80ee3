"""Users: the current user's profile, and the admin's user management."""

from flask import g
from flask_restx import Namespace, Resource, fields, inputs, reqparse

from app.api.envelope import (
    Email,
    NullableString,
    NullableTimestamp,
    Phone,
    Timestamp,
    accepts,
    fails,
    page_of,
    returns,
    returns_nothing,
)
from app.decorators import admin_required, login_check
from app.errors import Forbidden
from app.services import users

ns = Namespace("users", description="Users (listing and changing others is for admins)")

user_model = ns.model("User", {
    "id": fields.Integer(required=True, example=1),
    "phone": fields.String(required=True, example="+8613800138000"),
    "email": NullableString(required=True, example="me@example.com"),
    "nickname": fields.String(required=True, example="小明"),
    "role": fields.String(required=True, enum=list(users.ROLES)),
    "is_active": fields.Boolean(required=True),
    "created_at": Timestamp(required=True),
    "last_login_at": NullableTimestamp(required=True),
})
NICKNAME = fields.String(min_length=1, max_length=64, example="小明")
EMAIL = Email(max_length=254, example="me@example.com", description="an empty string removes it")
profile_changes = ns.model("ProfileChanges", {"nickname": NICKNAME, "email": EMAIL})
admin_changes = ns.model("UserChanges", {
    "nickname": NICKNAME, "email": EMAIL,
    "role": fields.String(enum=list(users.ROLES)),
    "is_active": fields.Boolean(description="false ends every session of the user at once"),
})
new_user = ns.model("NewUser", {
    "phone": Phone(required=True, example="13800138000"),
    "password": fields.String(required=True, min_length=8, max_length=128),
    "nickname": fields.String(required=True, min_length=1, max_length=64),
    "email": EMAIL,
    "role": fields.String(enum=list(users.ROLES), default="user"),
})

page_args = reqparse.RequestParser()
page_args.add_argument("page", type=inputs.int_range(1, 1_000_000), default=1, location="args")
page_args.add_argument("per_page", type=inputs.int_range(1, 100), default=20, location="args")
page_args.add_argument("q", type=str, location="args", help="part of a phone, email or nickname")


@ns.route("/me")
class Me(Resource):
    @login_check
    @returns(ns, user_model)
    @fails(ns, 503)
    def get(self):
        """The current user."""
        return g.profile

    @login_check
    @accepts(ns, profile_changes)
    @returns(ns, user_model)
    @fails(ns, 409, 503)
    def patch(self):
        """Change your nickname or email."""
        return users.update_user(g.current_user, dict(ns.payload))


@ns.route("/")
class Users(Resource):
    @admin_required
    @ns.expect(page_args)
    @returns(ns, page_of(ns, user_model))
    @fails(ns, 400, 503)
    def get(self):
        """Admin: a page of users, newest first; q matches phone, email or nickname."""
        args = page_args.parse_args()
        return users.list_users(args["page"], args["per_page"], args["q"])

    @admin_required
    @accepts(ns, new_user)
    @returns(ns, user_model, code=201, description="Created")
    @fails(ns, 409, 503)
    def post(self):
        """Admin: create a user."""
        body = ns.payload
        return users.create_user(body["phone"], body["password"], body["nickname"], body.get("email"),
                                 body.get("role") or "user")


@ns.route("/<int:user_id>")
@ns.param("user_id", "the user's id")
class UserItem(Resource):
    @login_check
    @returns(ns, user_model)
    @fails(ns, 404, 503)
    def get(self, user_id: int):
        """The user itself, or any user for an admin."""
        if user_id != g.user_id and not g.profile.is_admin:
            raise Forbidden("You may only see your own account.")
        return users.get_user(user_id)

    @admin_required
    @accepts(ns, admin_changes)
    @returns(ns, user_model)
    @fails(ns, 404, 409, 503)
    def patch(self, user_id: int):
        """Admin: change a user; deactivating ends every session of that user at once."""
        return users.update_user(users.get_user(user_id), dict(ns.payload))

    @admin_required
    @returns_nothing(ns, "Deleted; the user's sessions ended")
    @fails(ns, 404, 503)
    def delete(self, user_id: int):
        """Admin: delete a user and end their sessions."""
        users.delete_user(users.get_user(user_id))
