//! The GraphQL operations that several test files send, written once.

/// Registers an account (`$input`: `email`, `password`); answers the whole `AuthPayload`.
pub const REGISTER: &str = "mutation Register($input: RegisterInput!) {
  register(input: $input) {
    accessToken refreshToken tokenType expiresIn
    user { id email emailVerified displayName role createdAt updatedAt }
  }
}";

/// Signs in (`$input`: `email`, `password`).
pub const LOGIN: &str = "mutation Login($input: LoginInput!) {
  login(input: $input) {
    accessToken refreshToken tokenType expiresIn
    user { id email role }
  }
}";

/// The signed-in user.
pub const ME: &str = "query { me { id email displayName role } }";

/// Rotates a refresh token given as `$t`, or the refresh cookie when `$t` is null.
pub const REFRESH: &str = "mutation($t: String) { refresh(refreshToken: $t) { accessToken refreshToken expiresIn user { id email } } }";

/// Sends the signed-in user a new verification mail.
pub const REQUEST_VERIFICATION: &str = "mutation { requestEmailVerification }";
/// Verifies an address with the token of its mail (`$token`).
pub const VERIFY: &str = "mutation Verify($token: String!) { verifyEmail(token: $token) }";
/// Mails a reset link to `$email`, if it has an account.
pub const REQUEST_RESET: &str = "mutation Reset($email: String!) { requestPasswordReset(email: $email) }";
/// Sets a new password with the token of a reset mail (`$input`: `token`, `newPassword`).
pub const RESET: &str = "mutation Reset($input: ResetPasswordInput!) { resetPassword(input: $input) }";
/// Whether the signed-in user has verified their address.
pub const ME_VERIFIED: &str = "query { me { id emailVerified } }";
