drop index users_admins_idx;
drop index users_display_name_prefix_idx;
drop index users_email_prefix_idx;
drop index users_created_at_id_idx;
alter table users drop column disabled_at;
