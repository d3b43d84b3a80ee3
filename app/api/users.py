"""Users: the current user's profile, and the admin's user management."""

from flask_restx import Namespace, Resource, fields

from app import auth
from app.api.envelope import accepts, fails, page_of, returns, returns_nothing
from app.api.fields import Email, Phone, new_password, nickname, page_args, paging_of, role, user_model
from app.api.validation import BoundedText
from app.decorators import admin_required, log_record, login_check
from app.errors import Forbidden
from app.i18n import _
from app.services import session_control, users

ns = Namespace("users", description="Users (listing and changing others is for admins)")

ns.add_model(user_model.name, user_model)
NICKNAME = nickname(example="小明")
EMAIL = Email(example="me@example.com", description="an empty string removes it")
profile_changes = ns.model("ProfileChanges", {"nickname": NICKNAME, "email": EMAIL})
admin_changes = ns.model("UserChanges", {
    "nickname": NICKNAME, "email": EMAIL,
    "role": role(),
    "is_active": fields.Boolean(description="false ends every session of the user at once"),
})
new_user = ns.model("NewUser", {
    "phone": Phone(required=True, example="13800138000"),
    "password": new_password(required=True),
    "nickname": nickname(required=True),
    "email": EMAIL,
    "role": role(default="user"),
})

search_args = page_args.copy()
search_args.add_argument("q", type=BoundedText(64), location="args", help="part of a phone, email or nickname")


@ns.route("/me")
class Me(Resource):
    @login_check
    @returns(ns, user_model)
    @fails(ns, 503)
    def get(self):
        """The current user."""
        return auth.current_identity().profile

    @login_check
    @accepts(ns, profile_changes)
    @returns(ns, user_model)
    @fails(ns, 409, 503)
    def patch(self):
        """Change your nickname or email. Changing the email needs a recent authentication (401 REAUTH_REQUIRED;
        POST /auth/reauth)."""
        body, user = ns.payload, auth.current_user()
        if users.changes_email(user, body.get("email")):
            auth.require_recent_auth()
        return users.update_user(user, nickname=body.get("nickname"), email=body.get("email"),
                                 session_id=auth.current_identity().session_id)


@ns.route("/")
class Users(Resource):
    @admin_required
    @ns.expect(search_args)
    @returns(ns, page_of(ns, user_model))
    @fails(ns, 400, 503)
    def get(self):
        """Admin: a page of users, newest first; q matches phone, email or nickname."""
        args = search_args.parse_args()
        return users.list_users(paging_of(args), args["q"])

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
        caller = auth.current_identity()
        if user_id != caller.user_id and not caller.is_admin:
            raise Forbidden(_("You may only see your own account."))
        return users.get_user(user_id)

    @admin_required
    @accepts(ns, admin_changes)
    @returns(ns, user_model)
    @fails(ns, 404, 409, 503)
    def patch(self, user_id: int):
        """Admin: change a user; deactivating ends every session of that user at once. 403 for a change that
        would leave no active admin. Changing an email needs the admin's recent authentication (401
        REAUTH_REQUIRED; POST /auth/reauth)."""
        body, user = ns.payload, users.get_user(user_id)
        if users.changes_email(user, body.get("email")):
            auth.require_recent_auth()
        return users.update_user(user, nickname=body.get("nickname"), email=body.get("email"),
                                 role=body.get("role"), is_active=body.get("is_active"))

    @admin_required
    @returns_nothing(ns, "Deleted; the user's sessions ended")
    @fails(ns, 404, 503)
    def delete(self, user_id: int):
        """Admin: delete a user and end their sessions. 403 for your own account."""
        users.delete_user(users.get_user(user_id), deleted_by=auth.current_identity().user_id)


@ns.route("/<int:user_id>/sessions")
@ns.param("user_id", "the user's id")
class UserSessions(Resource):
    @admin_required
    @log_record
    @returns_nothing(ns, "Every session of the user ended")
    @fails(ns, 404, 503)
    def delete(self, user_id: int):
        """Admin: end every session of a user, on every process and host."""
        session_control.end_user_sessions(users.get_user(user_id))
