drop table email_tokens;
