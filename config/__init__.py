"""trialprep's configuration defaults, gate rules, protocol, schemas and profiles, as
package data (``trialprep.config_data``)."""
