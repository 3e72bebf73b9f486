"""Green-energy sources. ``SOURCE_MODULES`` maps each TWCManager ``sources.<Name>`` section
to the class that reads it (imported only when that source is enabled)."""

SOURCE_MODULES = {
    "Fronius": "twcmaster.sources.fronius:FroniusSource",
    "SolarEdge": "twcmaster.sources.solaredge:SolarEdgeSource",
    "Enphase": "twcmaster.sources.enphase:EnphaseSource",
    "Powerwall2": "twcmaster.sources.powerwall:PowerwallSource",
    "HASS": "twcmaster.sources.hass:HassSource",
    "MQTT": "twcmaster.sources.mqtt:MqttSource",
    "URL": "twcmaster.sources.url:UrlSource",
    "openHAB": "twcmaster.sources.openhab:OpenHabSource",
    "DSMR": "twcmaster.sources.dsmr:DsmrSource",
    "DSMRreader": "twcmaster.sources.dsmrreader:DsmrReaderSource",
    "EmonCMS": "twcmaster.sources.emoncms:EmonCmsSource",
    "IotaWatt": "twcmaster.sources.iotawatt:IotaWattSource",
    "P1Monitor": "twcmaster.sources.p1monitor:P1MonitorSource",
    "SmartPi": "twcmaster.sources.smartpi:SmartPiSource",
    "SolarLog": "twcmaster.sources.solarlog:SolarLogSource",
    "TED": "twcmaster.sources.ted:TedSource",
    "Volkszahler": "twcmaster.sources.volkszahler:VolkszahlerSource",
    "Kostal": "twcmaster.sources.kostal:KostalSource",
    "Victron": "twcmaster.sources.victron:VictronSource",
    "SmartMe": "twcmaster.sources.smartme:SmartMeSource",
    "Efergy": "twcmaster.sources.efergy:EfergySource",
    "OpenWeatherMap": "twcmaster.sources.openweathermap:OpenWeatherMapSource",
    "Growatt": "twcmaster.sources.growatt:GrowattSource",
    "SunSpec": "twcmaster.sources.sunspec:SunSpecSource",  # twcmaster's own: Modbus TCP
}
