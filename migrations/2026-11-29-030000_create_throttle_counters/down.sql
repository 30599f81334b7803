drop table throttle_counters;
